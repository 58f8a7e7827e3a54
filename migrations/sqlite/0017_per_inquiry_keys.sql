-- PostgreSQL only: its 0017 drops the keys of the rows written once per
-- inquiry, each a query per row there. SQLite keeps them: an index lookup.
SELECT 1;
