-- PostgreSQL's identifiers compare byte by byte from this migration on.
-- SQLite's columns already do: their collation is BINARY unless declared.
SELECT 1;
