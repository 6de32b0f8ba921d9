-- holdfast PostgreSQL store, migration 7: a bounded history.
--
-- `hf_sweep(batch, origin, history_limit)` sweeps like the two-argument one (kept, unchanged,
-- for processes of the previous version during a rolling upgrade) and then prunes the history:
-- it deletes the events whose id is at least `history_limit` below the newest id. max(id) and
-- the range both come from the primary key index, so this costs what it deletes. At most
-- `p_batch * 10` rows go per call (a backlog, e.g. the first sweep after this migration, is
-- worked off by the following sweeps), and rows another sweep is deleting are skipped rather
-- than waited for: a sweep holds root locks, and must never wait for another one.
--
-- The history also tells an ended lease from an unknown id (hf_renew): once the events of an
-- ended lease are pruned, renewing it answers 'unknown' (NOT_FOUND) instead of 'lost'.

CREATE FUNCTION hf_prune_history(p_limit bigint, p_max integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff bigint;
  v_count integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 THEN RETURN 0; END IF;
  v_cutoff := (SELECT max(id) FROM history) - p_limit;
  IF v_cutoff IS NULL OR v_cutoff < 1 THEN RETURN 0; END IF;
  DELETE FROM history WHERE id IN (
    SELECT id FROM history WHERE id <= v_cutoff ORDER BY id LIMIT p_max FOR UPDATE SKIP LOCKED);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;

CREATE FUNCTION hf_sweep(p_batch integer, p_origin text, p_history_limit bigint)
RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_result jsonb := hf_sweep(p_batch, p_origin);
BEGIN
  PERFORM hf_prune_history(p_history_limit, p_batch * 10);
  RETURN v_result;
END $$;
