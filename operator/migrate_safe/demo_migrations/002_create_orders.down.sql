DROP TABLE orders;
DELETE FROM customers WHERE email IN ('ada@example.com', 'grace@example.com');
