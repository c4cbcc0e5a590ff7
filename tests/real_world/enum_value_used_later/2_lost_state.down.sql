-- an enum value cannot be removed
SELECT 1;
