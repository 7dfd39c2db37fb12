-- 095_inline.sql — x4_money is STABLE, not IMMUTABLE: its body calls jsonb_build_object, which
-- PostgreSQL marks stable, and an IMMUTABLE SQL function with a stable body is never inlined, so
-- every call went through the SQL-function executor (fmgr_sql: about 7 % of PostgreSQL's CPU in
-- the throughput benchmark's profile). STABLE, it is inlined into the calling query. Same result.
ALTER FUNCTION x4_money(bigint) STABLE;
