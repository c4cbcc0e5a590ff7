UPDATE customers SET display_name = NULL WHERE display_name IS NOT NULL;
