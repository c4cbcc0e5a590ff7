-- forgets to drop the column
SELECT 1;
