-- holdfast PostgreSQL store, migration 4: who ended a lease by id, when not its owner.
--
-- A release or cancel by id asked by someone other than the lease's owner (an admin token, or a
-- token acting for the owner under a name of its own) records who asked as its history event's
-- `by`, as hf_release_owner and hf_force_release do. The plain hf_release and hf_cancel stay as
-- they are (they record the owner); the store calls these two only when it is given a `by`.
--
-- hf_release_by(id, by, origin): hf_release_full(id, origin), then, in the same transaction, the
--   `released` event it wrote gets `by`. Output: that of hf_release_full (hf_result, baseline
--   part 4/8: value true when the lease was live and is now released).
-- hf_cancel_by(ticket, by, origin): hf_cancel(ticket, origin), the same way for the event of a
--   lease granted to the ticket meanwhile (value true then). Output: that of hf_cancel.

CREATE FUNCTION hf_release_by(p_id text, p_by text, p_origin text) RETURNS jsonb LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
  v_result jsonb;
BEGIN
  v_result := hf_release_full(p_id, p_origin);
  IF (v_result->'value') = 'true'::jsonb THEN
    UPDATE history SET by = p_by WHERE lease_id = p_id AND type = 'released';
  END IF;
  RETURN v_result;
END $$;

CREATE FUNCTION hf_cancel_by(p_ticket text, p_by text, p_origin text) RETURNS jsonb LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
  v_result jsonb;
BEGIN
  v_result := hf_cancel(p_ticket, p_origin);
  IF (v_result->'value') = 'true'::jsonb THEN
    UPDATE history SET by = p_by WHERE lease_id = p_ticket AND type = 'released';
  END IF;
  RETURN v_result;
END $$;
