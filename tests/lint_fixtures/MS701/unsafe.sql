ALTER TABLE orders ADD COLUMN note text;
ALTER TABLE orders ADD COLUMN flag boolean DEFALT false;
