-- holdfast PostgreSQL store, migration 2: group commit, several operations in one call.
--
-- hf_batch(ops jsonb) runs the operations of `ops`, an array of {f, a} (f: the name of one of
-- the lease operations below, a: its arguments as a JSON array, in the order of the function's
-- parameters, each as the text a call of the function alone sends for it, so the request of an
-- acquire is a JSON string holding its JSON), one after the other, in one transaction: one round trip and one commit for all of
-- them. It returns a JSON array with one item per operation, in the same order:
--   {r: answer}              the operation's answer, as the function alone would have returned it;
--   {e: {code, message, detail}}  the error it raised (SQLSTATE, message, detail: the field of
--                            an HF400), its effects undone, the other operations unaffected;
--   {d: true}                deferred: not run, or undone because it would have had to wait for
--                            a lock; the caller sends it again (first in its next call).
--
-- Each operation runs in a subtransaction of its own (the BEGIN ... EXCEPTION block), so an
-- error undoes that operation only. Every operation is the same function, with the same locks
-- and the same guarantees, as when it is called alone; the difference is that the locks of the
-- earlier operations of the batch (advisory locks, row locks) stay held until the batch commits.
--
-- NO DEADLOCK. An operation that waits for a lock while the batch holds locks of earlier
-- operations could close a cycle with another transaction (another batch, or an operation alone)
-- that holds that lock and waits for one of ours. So only the first operation may wait for a lock
-- (the batch holds nothing yet, as an operation called alone); every later one runs with
-- `lock_timeout` at 1 ms and, when that runs out, is undone and deferred. A transaction waits
-- for ours at most until our next operation gives up (1 ms), and no wait-for cycle lasts. The
-- deadlock detector of a transaction that waited deadlock_timeout (1 s) may still see such a
-- cycle in that 1 ms and abort its wait: an operation of a batch aborted so is deferred (undone,
-- sent again), and a call alone is sent again by the store (src/stores/postgres/store.ts).
--
-- ORDER. Once an operation is deferred, every later operation of the batch is deferred too
-- (without running): operations run in the order given, and the caller sends the deferred ones
-- again in the same order, first in its next call.
--
-- TIME. Each operation reads the clock itself, as when it is alone (after its own locks). What
-- it writes becomes visible at the batch's commit, at or after every clock reading of the batch,
-- and another transaction that needs one of its locks reads its clock after that commit: a grant
-- is never dated before the end of the lease it follows (finding 7 of docs/reliability.md).
--
-- Subtransactions: a batch holds at most 64 operations (PostgreSQL keeps 64 subtransaction ids
-- per backend in shared memory; more would slow every other session's snapshot checks).

CREATE FUNCTION hf_batch(p_ops jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  v_op jsonb;
  v_a jsonb;
  v_r jsonb;
  v_out jsonb := '[]';
  v_index integer := 0;
  v_deferring boolean := false;
  v_timeout text := current_setting('lock_timeout');
  v_state text;
  v_message text;
  v_detail text;
BEGIN
  IF jsonb_typeof(p_ops) <> 'array' OR jsonb_array_length(p_ops) > 64 THEN
    PERFORM hf_invalid('ops', 'expected an array of at most 64 operations');
  END IF;
  FOR v_op IN SELECT e FROM jsonb_array_elements(p_ops) e LOOP
    v_index := v_index + 1;
    IF v_deferring THEN
      v_out := v_out || jsonb_build_array(jsonb_build_object('d', true));
      CONTINUE;
    END IF;
    IF v_index = 2 THEN PERFORM set_config('lock_timeout', '1ms', true); END IF;
    v_a := v_op->'a';
    BEGIN
      v_r := CASE v_op->>'f'
        WHEN 'hf_acquire' THEN hf_acquire((v_a->>0)::jsonb, (v_a->>1)::bigint, (v_a->>2)::bigint, v_a->>3)::jsonb
        WHEN 'hf_acquire_full' THEN hf_acquire_full((v_a->>0)::jsonb, (v_a->>1)::bigint, (v_a->>2)::bigint, v_a->>3)
        WHEN 'hf_release' THEN hf_release(v_a->>0, v_a->>1)::jsonb
        WHEN 'hf_release_full' THEN hf_release_full(v_a->>0, v_a->>1)
        WHEN 'hf_renew' THEN hf_renew(v_a->>0, (v_a->>1)::bigint, v_a->>2)
        WHEN 'hf_poll' THEN hf_poll(v_a->>0, v_a->>1)
        WHEN 'hf_cancel' THEN hf_cancel(v_a->>0, v_a->>1)
      END;
      IF v_r IS NULL THEN PERFORM hf_invalid('ops', 'unknown operation ' || coalesce(v_op->>'f', 'null')); END IF;
      v_out := v_out || jsonb_build_array(jsonb_build_object('r', v_r));
    EXCEPTION
      WHEN lock_not_available THEN
        IF v_index = 1 THEN RAISE; END IF;
        v_deferring := true;
        v_out := v_out || jsonb_build_array(jsonb_build_object('d', true));
      WHEN deadlock_detected THEN
        -- A cycle the detector saw in the 1 ms another batch's operation waited (see NO DEADLOCK):
        -- this operation, undone, goes again.
        v_deferring := true;
        v_out := v_out || jsonb_build_array(jsonb_build_object('d', true));
      WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
        v_out := v_out || jsonb_build_array(jsonb_build_object(
          'e', jsonb_build_object('code', v_state, 'message', v_message, 'detail', nullif(v_detail, ''))));
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', v_timeout, true);
  RETURN v_out;
END $$;
