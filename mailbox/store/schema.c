/*
 * mailbox/store/schema.c -- versioned migrations (SQL in C) and the check
 * that `serve` runs before it accepts mail.
 *
 * migrations[] is append-only: a released step is never edited, a change
 * is a new step.  Each step runs in its own transaction together with the
 * INSERT into schema_version that records it, so a failed step leaves the
 * database exactly at the previous version.  A session-level advisory lock
 * (pg_advisory_lock on a fixed key) serialises concurrent migrators: the
 * second one waits, then re-reads the version and finds nothing to do.
 *
 * Concurrency inside the schema (DESIGN.md "Several instances, one
 * store"): UID and MODSEQ come from the mailbox row, which tp_deliver,
 * tp_copy, tp_store_flags and tp_expunge lock with UPDATE ... RETURNING
 * (mailbox ids in ascending order, so two calls cannot deadlock).  The
 * lock is held to commit, so a UID is never visible before a smaller one
 * in the same mailbox (RFC 9051 2.3.1.1: UIDs strictly ascending).
 *
 * The outbound queue (migration 2, mailbox/outbound/queue.h):
 * tp_queue_claim leases due recipients with FOR UPDATE SKIP LOCKED, so
 * concurrent claimers never wait for or take each other's rows;
 * tp_queue_record writes results only under the claim's owner token and
 * deletes a message whose recipients are all final, after locking the
 * message row (so two instances finishing its last recipients at once
 * serialise); tp_queue_release gives an instance's claims back.
 *
 * Search: body text goes into a tsvector for word search and into a
 * plain text column for IMAP's substring SEARCH.  to_tsvector() fails
 * above 1 MB of tsvector (Postgres "string is too long for tsvector"), and
 * a failed delivery is far worse than a shorter index.  So: positions are
 * stripped (SEARCH needs no phrase positions), and the input is cut at
 * SCHEMA_SEARCH_TSV_MAX characters.  A stripped entry costs 4 bytes of
 * header plus its lexeme, so ordinary text shrinks; only a pathological
 * input (hundreds of thousands of distinct one-character words of 4-byte
 * UTF-8) could exceed 1 MB, and then tp_tsv() catches
 * program_limit_exceeded and indexes the first 65536 characters instead:
 * at most 256 KB of text, at most 2.5 bytes of tsvector per byte of text
 * (one-byte words, 4 + 1 bytes per 2 bytes of input), so below 1 MB.
 */
#include "mailbox/store/schema.h"

#include "mailbox/store/pg.h"
#include "shared/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key: "tailpost" in ASCII, so it is recognisable in
 * pg_locks and unlikely to collide with another application's key. */
#define SCHEMA_LOCK_KEY "8387236824261703540"

struct migration {
	int version;
	const char *name;
	const char *sql;
};

static const struct migration migrations[] = {
        {1, "initial schema",
         /* --- bookkeeping -------------------------------------------------- */
         "CREATE TABLE IF NOT EXISTS schema_version ("
         "  version integer PRIMARY KEY,"
         "  name text NOT NULL,"
         "  applied timestamptz NOT NULL DEFAULT now());\n"
         /* --- directory ---------------------------------------------------- */
         "CREATE TABLE domains ("
         "  id bigserial PRIMARY KEY,"
         "  name text NOT NULL UNIQUE CHECK (name = lower(name) AND name <> ''),"
         "  created timestamptz NOT NULL DEFAULT now());\n"
         "CREATE TABLE accounts ("
         "  id bigserial PRIMARY KEY,"
         "  login text NOT NULL UNIQUE CHECK (login = lower(login) AND login <> ''),"
         "  role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),"
         "  password_hash text NOT NULL,"
         "  quota_bytes bigint NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),"
         "  disabled boolean NOT NULL DEFAULT false,"
         "  created timestamptz NOT NULL DEFAULT now());\n"
         "CREATE TABLE addresses ("
         "  id bigserial PRIMARY KEY,"
         "  address text NOT NULL UNIQUE CHECK (address = lower(address)),"
         "  domain_id bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
         "  account_id bigint REFERENCES accounts(id) ON DELETE CASCADE,"
         "  targets text[],"
         "  created timestamptz NOT NULL DEFAULT now(),"
         "  CHECK ((account_id IS NULL) <> (targets IS NULL)),"
         "  CHECK (targets IS NULL OR cardinality(targets) > 0));\n"
         "CREATE INDEX addresses_account ON addresses(account_id);\n"
         "CREATE INDEX addresses_domain ON addresses(domain_id);\n"
         "CREATE TABLE api_tokens ("
         "  id bigserial PRIMARY KEY,"
         "  name text NOT NULL UNIQUE,"
         "  hash text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),"
         "  created timestamptz NOT NULL DEFAULT now(),"
         "  last_used timestamptz);\n"
         "CREATE TABLE dkim_keys ("
         "  id bigserial PRIMARY KEY,"
         "  domain_id bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
         "  selector text NOT NULL,"
         "  algorithm text NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),"
         "  private_key text NOT NULL,"
         "  public_key text NOT NULL,"
         "  active boolean NOT NULL DEFAULT true,"
         "  created timestamptz NOT NULL DEFAULT now(),"
         "  UNIQUE (domain_id, selector));\n"
         /* --- mail --------------------------------------------------------- */
         "CREATE SEQUENCE uidvalidity_seq;\n"
         "CREATE TABLE mailboxes ("
         "  id bigserial PRIMARY KEY,"
         "  account_id bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
         "  name text NOT NULL,"
         "  uidvalidity bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),"
         "  uidnext bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),"
         "  highestmodseq bigint NOT NULL DEFAULT 1,"
         "  subscribed boolean NOT NULL DEFAULT true,"
         "  special_use text,"
         "  created timestamptz NOT NULL DEFAULT now(),"
         "  UNIQUE (account_id, name));\n"
         "CREATE TABLE blobs ("
         "  key text PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),"
         "  size bigint NOT NULL CHECK (size >= 0),"
         "  created timestamptz NOT NULL DEFAULT now(),"
         "  last_used timestamptz NOT NULL DEFAULT now());\n"
         "CREATE TABLE messages ("
         "  id bigserial PRIMARY KEY,"
         "  mailbox_id bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
         "  uid bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),"
         "  modseq bigint NOT NULL,"
         "  flags text[] NOT NULL DEFAULT '{}',"
         "  internaldate timestamptz NOT NULL DEFAULT now(),"
         "  size bigint NOT NULL CHECK (size >= 0),"
         "  blob_key text NOT NULL,"
         "  envelope text,"
         "  bodystructure text,"
         "  body text,"
         "  hdr_from text, hdr_to text, hdr_cc text, hdr_subject text,"
         "  hdr_date timestamptz, hdr_message_id text,"
         "  parts jsonb,"
         "  search_tsv tsvector,"
         "  search_text text,"
         "  expunged boolean NOT NULL DEFAULT false,"
         "  UNIQUE (mailbox_id, uid));\n"
         "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);\n"
         "CREATE INDEX messages_blob ON messages(blob_key);\n"
         "CREATE INDEX messages_search ON messages USING gin(search_tsv);\n"
         /* --- outbound queue (claimed with FOR UPDATE SKIP LOCKED) ---------- */
         "CREATE TABLE queue_messages ("
         "  id bigserial PRIMARY KEY,"
         "  account_id bigint REFERENCES accounts(id) ON DELETE SET NULL,"
         "  sender text NOT NULL,"
         "  blob_key text NOT NULL,"
         "  size bigint NOT NULL,"
         "  dsn_ret text CHECK (dsn_ret IN ('FULL', 'HDRS')),"
         "  dsn_envid text,"
         "  created timestamptz NOT NULL DEFAULT now());\n"
         "CREATE INDEX queue_messages_blob ON queue_messages(blob_key);\n"
         "CREATE TABLE queue_rcpts ("
         "  id bigserial PRIMARY KEY,"
         "  message_id bigint NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,"
         "  rcpt text NOT NULL,"
         "  status text NOT NULL DEFAULT 'pending'"
         "    CHECK (status IN ('pending', 'sent', 'failed', 'bounced')),"
         "  next_attempt timestamptz NOT NULL DEFAULT now(),"
         "  attempts integer NOT NULL DEFAULT 0,"
         "  last_error text,"
         "  lease_until timestamptz,"
         "  lease_owner text,"
         "  dsn_notify text,"
         "  dsn_orcpt text,"
         "  updated timestamptz NOT NULL DEFAULT now());\n"
         "CREATE INDEX queue_rcpts_due ON queue_rcpts(next_attempt) WHERE status = 'pending';\n"
         "CREATE INDEX queue_rcpts_message ON queue_rcpts(message_id);\n"
         /* --- functions ------------------------------------------------------ */
         "CREATE FUNCTION tp_tsv(t text) RETURNS tsvector LANGUAGE plpgsql IMMUTABLE AS $$\n"
         "BEGIN\n"
         "  IF t IS NULL THEN RETURN NULL; END IF;\n"
         "  RETURN strip(to_tsvector('simple', t));\n"
         "EXCEPTION WHEN program_limit_exceeded THEN\n"
         "  RETURN strip(to_tsvector('simple', left(t, 65536)));\n"
         "END $$;\n"
         "CREATE FUNCTION tp_mailbox_create(p_account bigint, p_name text, p_special text)\n"
         "RETURNS bigint LANGUAGE sql AS $$\n"
         "  INSERT INTO mailboxes(account_id, name, uidvalidity, special_use)\n"
         "  VALUES (p_account, p_name,\n"
         "          (extract(epoch FROM now())::bigint % 4000000000) + 1\n"
         "            + nextval('uidvalidity_seq') % 1000000,\n"
         "          p_special)\n"
         "  RETURNING id $$;\n"
         "CREATE FUNCTION tp_blob_reserve(p_key text, p_size bigint) RETURNS void\n"
         "LANGUAGE sql AS $$\n"
         "  INSERT INTO blobs(key, size) VALUES (p_key, p_size)\n"
         "  ON CONFLICT (key) DO UPDATE SET last_used = now() $$;\n"
         "CREATE FUNCTION tp_deliver(p_mailboxes bigint[], p_blob text, p_size bigint,\n"
         "    p_internaldate timestamptz, p_flags text[], p_envelope text, p_bodystructure text,\n"
         "    p_body text, p_from text, p_to text, p_cc text, p_subject text,\n"
         "    p_date timestamptz, p_message_id text, p_parts jsonb, p_search text)\n"
         "RETURNS TABLE(mailbox_id bigint, uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_tsv tsvector := tp_tsv(left(p_search, 262144));\n"
         "  v_mb bigint;\n"
         "BEGIN\n"
         "  IF p_mailboxes IS NULL OR cardinality(p_mailboxes) = 0 THEN\n"
         "    RAISE EXCEPTION 'tp_deliver: no mailbox';\n"
         "  END IF;\n"
         "  INSERT INTO blobs(key, size) VALUES (p_blob, p_size)\n"
         "  ON CONFLICT (key) DO UPDATE SET last_used = now();\n"
         "  FOR v_mb IN SELECT DISTINCT m FROM unnest(p_mailboxes) AS m ORDER BY m LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,\n"
         "                          highestmodseq = mb.highestmodseq + 1\n"
         "      WHERE mb.id = v_mb\n"
         "      RETURNING mb.id, mb.uidnext - 1, mb.highestmodseq INTO mailbox_id, uid, modseq;\n"
         "    IF NOT FOUND THEN\n"
         "      RAISE EXCEPTION 'tp_deliver: no mailbox %', v_mb USING ERRCODE = "
         "'foreign_key_violation';\n"
         "    END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, hdr_date,\n"
         "        hdr_message_id, parts, search_tsv, search_text)\n"
         "      VALUES (mailbox_id, uid, modseq, coalesce(p_flags, '{}'),\n"
         "        coalesce(p_internaldate, now()), p_size, p_blob, p_envelope, p_bodystructure,\n"
         "        p_body, p_from, p_to, p_cc, p_subject, p_date, p_message_id, p_parts, v_tsv,\n"
         "        left(p_search, 1048576));\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "END $$;\n"
         "CREATE FUNCTION tp_store_flags(p_mailbox bigint, p_uids bigint[], p_mode text,\n"
         "    p_flags text[], p_unchangedsince bigint)\n"
         "RETURNS TABLE(uid bigint, modseq bigint, flags text[], failed boolean)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "  r record;\n"
         "  v_new text[];\n"
         "BEGIN\n"
         "  IF p_mode NOT IN ('set', 'add', 'remove') THEN\n"
         "    RAISE EXCEPTION 'tp_store_flags: bad mode %', p_mode;\n"
         "  END IF;\n"
         /* lock the mailbox row first: the same order as tp_deliver */
         "  SELECT mb.highestmodseq INTO v_modseq FROM mailboxes mb WHERE mb.id = p_mailbox FOR "
         "UPDATE;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  FOR r IN SELECT m.id, m.uid, m.modseq, m.flags FROM messages m\n"
         "      WHERE m.mailbox_id = p_mailbox AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "      ORDER BY m.uid FOR UPDATE LOOP\n"
         "    IF p_unchangedsince IS NOT NULL AND r.modseq > p_unchangedsince THEN\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := true;\n"
         "      RETURN NEXT; CONTINUE;\n"
         "    END IF;\n"
         "    IF p_mode = 'set' THEN\n"
         "      v_new := ARRAY(SELECT DISTINCT f FROM unnest(p_flags) f ORDER BY f);\n"
         "    ELSIF p_mode = 'add' THEN\n"
         "      v_new := ARRAY(SELECT DISTINCT f FROM unnest(r.flags || p_flags) f ORDER BY f);\n"
         "    ELSE\n"
         "      v_new := ARRAY(SELECT f FROM unnest(r.flags) f WHERE f <> ALL(p_flags) ORDER BY "
         "f);\n"
         "    END IF;\n"
         "    IF v_new IS DISTINCT FROM ARRAY(SELECT f FROM unnest(r.flags) f ORDER BY f) THEN\n"
         "      v_modseq := v_modseq + 1;\n"
         "      UPDATE messages m SET flags = v_new, modseq = v_modseq WHERE m.id = r.id;\n"
         "      uid := r.uid; modseq := v_modseq; flags := v_new; failed := false;\n"
         "    ELSE\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := false;\n"
         "    END IF;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  UPDATE mailboxes mb SET highestmodseq = v_modseq WHERE mb.id = p_mailbox\n"
         "    AND mb.highestmodseq < v_modseq;\n"
         "END $$;\n"
         "CREATE FUNCTION tp_expunge(p_mailbox bigint, p_uids bigint[])\n"
         "RETURNS TABLE(uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "BEGIN\n"
         "  UPDATE mailboxes mb SET highestmodseq = mb.highestmodseq + 1 WHERE mb.id = p_mailbox\n"
         "    RETURNING mb.highestmodseq INTO v_modseq;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  RETURN QUERY UPDATE messages m SET expunged = true, modseq = v_modseq\n"
         "    WHERE m.mailbox_id = p_mailbox AND NOT m.expunged AND '\\Deleted' = ANY(m.flags)\n"
         "      AND (p_uids IS NULL OR m.uid = ANY(p_uids))\n"
         "    RETURNING m.uid, m.modseq;\n"
         "END $$;\n"
         "CREATE FUNCTION tp_copy(p_src bigint, p_uids bigint[], p_dst bigint, p_move boolean)\n"
         "RETURNS TABLE(src_uid bigint, dst_uid bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  r record;\n"
         "  v_uid bigint;\n"
         "  v_modseq bigint;\n"
         "  v_src_modseq bigint;\n"
         "BEGIN\n"
         "  IF p_src = p_dst THEN RAISE EXCEPTION 'tp_copy: same mailbox'; END IF;\n"
         /* both rows locked in id order */
         "  PERFORM 1 FROM mailboxes mb WHERE mb.id IN (p_src, p_dst) ORDER BY mb.id FOR UPDATE;\n"
         "  FOR r IN SELECT m.* FROM messages m WHERE m.mailbox_id = p_src\n"
         "      AND m.uid = ANY(p_uids) AND NOT m.expunged ORDER BY m.uid LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1, highestmodseq = mb.highestmodseq + "
         "1\n"
         "      WHERE mb.id = p_dst RETURNING mb.uidnext - 1, mb.highestmodseq INTO v_uid, "
         "v_modseq;\n"
         "    IF NOT FOUND THEN RAISE EXCEPTION 'tp_copy: no mailbox %', p_dst; END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, hdr_date,\n"
         "        hdr_message_id, parts, search_tsv, search_text)\n"
         "      VALUES (p_dst, v_uid, v_modseq, r.flags, r.internaldate, r.size, r.blob_key,\n"
         "        r.envelope, r.bodystructure, r.body, r.hdr_from, r.hdr_to, r.hdr_cc,\n"
         "        r.hdr_subject, r.hdr_date, r.hdr_message_id, r.parts, r.search_tsv,\n"
         "        r.search_text);\n"
         "    src_uid := r.uid; dst_uid := v_uid;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  IF p_move THEN\n"
         "    UPDATE mailboxes mb SET highestmodseq = mb.highestmodseq + 1 WHERE mb.id = p_src\n"
         "      RETURNING mb.highestmodseq INTO v_src_modseq;\n"
         "    UPDATE messages m SET expunged = true, modseq = v_src_modseq\n"
         "      WHERE m.mailbox_id = p_src AND m.uid = ANY(p_uids) AND NOT m.expunged;\n"
         "  END IF;\n"
         "END $$;\n"
         /* Recipient resolution (mailbox/directory/lookup.h): rows of
          * (kind, account_id, target): kind 'domain' once if the domain is
          * ours, then 'account' or 'forward' rows. */
         "CREATE FUNCTION tp_rcpt_lookup(p_address text)\n"
         "RETURNS TABLE(kind text, account_id bigint, target text)\n"
         "LANGUAGE plpgsql STABLE AS $$\n"
         "DECLARE\n"
         "  v_addr text := lower(p_address);\n"
         "  v_local text;\n"
         "  v_domain text;\n"
         "  v_todo text[];\n"
         "  v_seen text[] := '{}';\n"
         "  v_cur text;\n"
         "  v_depth int := 0;\n"
         "  v_next text[];\n"
         "  a record;\n"
         "  v_acc bigint;\n"
         "  v_accs bigint[] := '{}';\n"
         "  v_fwd text[] := '{}';\n"
         "  v_found boolean;\n"
         "BEGIN\n"
         "  v_local := split_part(v_addr, '@', 1);\n"
         "  v_domain := substr(v_addr, length(v_local) + 2);\n"
         "  IF position('@' IN v_addr) = 0 OR v_domain = ''\n"
         "     OR NOT EXISTS (SELECT 1 FROM domains d WHERE d.name = v_domain) THEN\n"
         "    RETURN;\n"
         "  END IF;\n"
         "  kind := 'domain'; account_id := NULL; target := v_domain; RETURN NEXT;\n"
         "  v_todo := ARRAY[v_addr];\n"
         "  WHILE cardinality(v_todo) > 0 AND v_depth < 8 LOOP\n"
         "    v_depth := v_depth + 1;\n"
         "    v_next := '{}';\n"
         "    FOREACH v_cur IN ARRAY v_todo LOOP\n"
         "      CONTINUE WHEN v_cur = ANY(v_seen);\n"
         "      v_seen := v_seen || v_cur;\n"
         /* an account login named directly */
         "      SELECT ac.id INTO v_acc FROM accounts ac WHERE ac.login = v_cur AND NOT "
         "ac.disabled;\n"
         "      IF FOUND AND v_depth > 1 THEN\n"
         "        v_accs := v_accs || v_acc; CONTINUE;\n"
         "      END IF;\n"
         "      v_found := false;\n"
         "      IF position('@' IN v_cur) > 0 THEN\n"
         "        v_local := split_part(v_cur, '@', 1);\n"
         "        v_domain := substr(v_cur, length(v_local) + 2);\n"
         /* exact, then user+tag -> user (RFC 5233), then the catch-all */
         "        SELECT * INTO a FROM addresses ad WHERE ad.address = v_cur;\n"
         "        v_found := FOUND;\n"
         "        IF NOT v_found AND position('+' IN v_local) > 1 THEN\n"
         "          SELECT * INTO a FROM addresses ad\n"
         "            WHERE ad.address = split_part(v_local, '+', 1) || '@' || v_domain;\n"
         "          v_found := FOUND;\n"
         "        END IF;\n"
         "        IF NOT v_found AND EXISTS (SELECT 1 FROM domains d WHERE d.name = v_domain) "
         "THEN\n"
         "          SELECT * INTO a FROM addresses ad WHERE ad.address = '@' || v_domain;\n"
         "          v_found := FOUND;\n"
         "        ELSIF NOT v_found AND v_depth > 1 THEN\n"
         "          v_fwd := v_fwd || v_cur; CONTINUE;\n"
         "        END IF;\n"
         "      END IF;\n"
         "      IF NOT v_found THEN CONTINUE; END IF;\n"
         "      IF a.account_id IS NOT NULL THEN\n"
         "        IF EXISTS (SELECT 1 FROM accounts ac WHERE ac.id = a.account_id\n"
         "                   AND NOT ac.disabled) THEN\n"
         "          v_accs := v_accs || a.account_id;\n"
         "        END IF;\n"
         "      ELSE\n"
         "        v_next := v_next || a.targets;\n"
         "      END IF;\n"
         "    END LOOP;\n"
         "    v_todo := v_next;\n"
         "  END LOOP;\n"
         "  FOR v_acc IN SELECT DISTINCT x FROM unnest(v_accs) x ORDER BY x LOOP\n"
         "    kind := 'account'; account_id := v_acc; target := NULL; RETURN NEXT;\n"
         "  END LOOP;\n"
         "  FOR v_cur IN SELECT DISTINCT x FROM unnest(v_fwd) x ORDER BY x LOOP\n"
         "    kind := 'forward'; account_id := NULL; target := v_cur; RETURN NEXT;\n"
         "  END LOOP;\n"
         "END $$;\n"},
        {2, "outbound queue: claim, record, release",
         "ALTER TABLE queue_rcpts ADD COLUMN delay_notified boolean NOT NULL DEFAULT false;\n"
         "CREATE INDEX queue_rcpts_lease ON queue_rcpts(lease_owner) WHERE lease_owner IS NOT "
         "NULL;\n"
         /* claim: due, unleased recipients of at most p_limit messages, locked with SKIP LOCKED so
            concurrent claimers never wait for or take each other's rows */
         "CREATE FUNCTION tp_queue_claim(p_owner text, p_lease_ms bigint, p_limit integer)\n"
         "RETURNS TABLE(rcpt_id bigint, message_id bigint, rcpt text, attempts integer,\n"
         "    dsn_notify text, dsn_orcpt text, delay_notified boolean, sender text, blob_key "
         "text,\n"
         "    size bigint, account_id bigint, dsn_ret text, dsn_envid text, created bigint)\n"
         "LANGUAGE sql AS $$\n"
         "  WITH cand AS (\n"
         "    SELECT r.id, r.message_id, r.next_attempt FROM queue_rcpts r\n"
         "     WHERE r.status = 'pending' AND r.next_attempt <= now()\n"
         "       AND (r.lease_until IS NULL OR r.lease_until <= now())\n"
         "     ORDER BY r.next_attempt, r.id\n"
         "     LIMIT greatest(p_limit, 1) * 16\n"
         "     FOR UPDATE SKIP LOCKED),\n"
         "  msgs AS (\n"
         "    SELECT c.message_id FROM cand c GROUP BY c.message_id\n"
         "     ORDER BY min(c.next_attempt), c.message_id LIMIT greatest(p_limit, 1)),\n"
         "  upd AS (\n"
         "    UPDATE queue_rcpts r SET lease_owner = p_owner,\n"
         "        lease_until = now() + p_lease_ms * interval '1 millisecond',\n"
         "        attempts = r.attempts + 1, updated = now()\n"
         "      FROM cand c\n"
         "     WHERE r.id = c.id AND c.message_id IN (SELECT m.message_id FROM msgs m)\n"
         "    RETURNING r.id, r.message_id, r.rcpt, r.attempts, r.dsn_notify, r.dsn_orcpt,\n"
         "              r.delay_notified)\n"
         "  SELECT u.id, u.message_id, u.rcpt, u.attempts, u.dsn_notify, u.dsn_orcpt,\n"
         "         u.delay_notified, q.sender, q.blob_key, q.size, q.account_id, q.dsn_ret,\n"
         "         q.dsn_envid, extract(epoch FROM q.created)::bigint\n"
         "    FROM upd u JOIN queue_messages q ON q.id = u.message_id\n"
         "   ORDER BY u.message_id, u.id $$;\n"
         /* record: results count only while the claim (p_owner) is still the recipient's; a message
            whose recipients are all final is deleted.  The message rows are locked first, so two
            instances finishing the last recipients of one message serialise and the second sees the
            first's update */
         "CREATE FUNCTION tp_queue_record(p_owner text, p_ids bigint[], p_status text[],\n"
         "    p_next bigint[], p_error text[], p_delay boolean[])\n"
         "RETURNS TABLE(out_kind text, out_id bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_ids bigint[];\n"
         "  v_msgs bigint[];\n"
         "  v_done bigint[];\n"
         "BEGIN\n"
         "  PERFORM 1 FROM queue_messages q\n"
         "    WHERE q.id IN (SELECT r.message_id FROM queue_rcpts r WHERE r.id = ANY(p_ids))\n"
         "    ORDER BY q.id FOR UPDATE;\n"
         "  WITH u AS (\n"
         "    UPDATE queue_rcpts r SET status = x.st,\n"
         "        next_attempt = CASE WHEN x.nx IS NULL THEN r.next_attempt ELSE "
         "to_timestamp(x.nx) END,\n"
         "        last_error = coalesce(x.er, r.last_error),\n"
         "        delay_notified = r.delay_notified OR coalesce(x.dn, false),\n"
         "        lease_owner = NULL, lease_until = NULL, updated = now()\n"
         "      FROM unnest(p_ids, p_status, p_next, p_error, p_delay) AS x(id, st, nx, er, dn)\n"
         "     WHERE r.id = x.id AND r.lease_owner = p_owner AND r.status = 'pending'\n"
         "    RETURNING r.id, r.message_id)\n"
         "  SELECT array_agg(u.id), array_agg(DISTINCT u.message_id) INTO v_ids, v_msgs FROM u;\n"
         "  WITH d AS (\n"
         "    DELETE FROM queue_messages q WHERE q.id = ANY(v_msgs)\n"
         "       AND NOT EXISTS (SELECT 1 FROM queue_rcpts r\n"
         "                        WHERE r.message_id = q.id AND r.status = 'pending')\n"
         "    RETURNING q.id)\n"
         "  SELECT array_agg(d.id) INTO v_done FROM d;\n"
         "  RETURN QUERY SELECT 'rcpt'::text, x FROM unnest(v_ids) x\n"
         "    UNION ALL SELECT 'deleted'::text, x FROM unnest(v_done) x;\n"
         "END $$;\n"
         /* release (SIGTERM): give back the unfinished claims of one instance (owner tokens start
            with p_prefix); the claim did not become an attempt */
         "CREATE FUNCTION tp_queue_release(p_prefix text) RETURNS bigint\n"
         "LANGUAGE sql AS $$\n"
         "  WITH u AS (\n"
         "    UPDATE queue_rcpts r SET lease_owner = NULL, lease_until = NULL,\n"
         "        attempts = greatest(r.attempts - 1, 0), updated = now()\n"
         "     WHERE r.status = 'pending' AND r.lease_owner IS NOT NULL\n"
         "       AND left(r.lease_owner, length(p_prefix)) = p_prefix\n"
         "    RETURNING 1)\n"
         "  SELECT count(*) FROM u $$;\n"},
        {3, "per-mailbox used bytes; word index in its own table; store_flags reports changes",
         /* used_bytes: the octets of the mailbox's messages that are not
            expunged, kept by every function that adds or expunges messages
            (under the mailbox row lock they already take), so quota is a
            sum over the account's few mailboxes instead of its messages */
         "ALTER TABLE mailboxes ADD COLUMN used_bytes bigint NOT NULL DEFAULT 0;\n"
         "UPDATE mailboxes mb SET used_bytes = s.total\n"
         "  FROM (SELECT m.mailbox_id, sum(m.size) AS total FROM messages m\n"
         "         WHERE NOT m.expunged GROUP BY m.mailbox_id) s\n"
         " WHERE s.mailbox_id = mb.id;\n"
         /* the word index in a table of its own: a GIN index on messages
            made every flag change or expunge (a new row version, as modseq
            is indexed) insert every word of the message into it again,
            twice the cost of the change itself */
         "CREATE TABLE message_words (\n"
         "  message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,\n"
         "  search_tsv tsvector NOT NULL);\n"
         "INSERT INTO message_words(message_id, search_tsv)\n"
         "  SELECT m.id, m.search_tsv FROM messages m WHERE m.search_tsv IS NOT NULL;\n"
         "CREATE INDEX message_words_search ON message_words USING gin(search_tsv);\n"
         "DROP INDEX messages_search;\n"
         "ALTER TABLE messages DROP COLUMN search_tsv;\n"
         "CREATE OR REPLACE FUNCTION tp_deliver(p_mailboxes bigint[], p_blob text, p_size bigint,\n"
         "    p_internaldate timestamptz, p_flags text[], p_envelope text, p_bodystructure text,\n"
         "    p_body text, p_from text, p_to text, p_cc text, p_subject text,\n"
         "    p_date timestamptz, p_message_id text, p_parts jsonb, p_search text)\n"
         "RETURNS TABLE(mailbox_id bigint, uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_tsv tsvector := tp_tsv(left(p_search, 262144));\n"
         "  v_mb bigint;\n"
         "  v_id bigint;\n"
         "BEGIN\n"
         "  IF p_mailboxes IS NULL OR cardinality(p_mailboxes) = 0 THEN\n"
         "    RAISE EXCEPTION 'tp_deliver: no mailbox';\n"
         "  END IF;\n"
         "  INSERT INTO blobs(key, size) VALUES (p_blob, p_size)\n"
         "  ON CONFLICT (key) DO UPDATE SET last_used = now();\n"
         "  FOR v_mb IN SELECT DISTINCT m FROM unnest(p_mailboxes) AS m ORDER BY m LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,\n"
         "                          highestmodseq = mb.highestmodseq + 1,\n"
         "                          used_bytes = mb.used_bytes + p_size\n"
         "      WHERE mb.id = v_mb\n"
         "      RETURNING mb.id, mb.uidnext - 1, mb.highestmodseq INTO mailbox_id, uid, modseq;\n"
         "    IF NOT FOUND THEN\n"
         "      RAISE EXCEPTION 'tp_deliver: no mailbox %', v_mb USING ERRCODE = "
         "'foreign_key_violation';\n"
         "    END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, hdr_date,\n"
         "        hdr_message_id, parts, search_text)\n"
         "      VALUES (mailbox_id, uid, modseq, coalesce(p_flags, '{}'),\n"
         "        coalesce(p_internaldate, now()), p_size, p_blob, p_envelope, p_bodystructure,\n"
         "        p_body, p_from, p_to, p_cc, p_subject, p_date, p_message_id, p_parts,\n"
         "        left(p_search, 1048576))\n"
         "      RETURNING id INTO v_id;\n"
         "    IF v_tsv IS NOT NULL THEN\n"
         "      INSERT INTO message_words(message_id, search_tsv) VALUES (v_id, v_tsv);\n"
         "    END IF;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "END $$;\n"
         "CREATE OR REPLACE FUNCTION tp_expunge(p_mailbox bigint, p_uids bigint[])\n"
         "RETURNS TABLE(uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "BEGIN\n"
         /* the mailbox row is locked first and written once */
         "  SELECT mb.highestmodseq + 1 INTO v_modseq FROM mailboxes mb WHERE mb.id = p_mailbox\n"
         "    FOR UPDATE;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         /* p_uids NULL: all; two statements so that the UID list can use
            the (mailbox_id, uid) index in a generic plan */
         "  IF p_uids IS NULL THEN\n"
         "    p_uids := ARRAY(SELECT m.uid FROM messages m WHERE m.mailbox_id = p_mailbox\n"
         "      AND NOT m.expunged AND '\\Deleted' = ANY(m.flags));\n"
         "  END IF;\n"
         "  RETURN QUERY WITH e AS (\n"
         "    UPDATE messages m SET expunged = true, modseq = v_modseq\n"
         "     WHERE m.mailbox_id = p_mailbox AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "       AND '\\Deleted' = ANY(m.flags)\n"
         "    RETURNING m.uid, m.modseq, m.size),\n"
         "  u AS (\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_modseq,\n"
         "        used_bytes = mb.used_bytes - coalesce((SELECT sum(e.size) FROM e), 0)\n"
         "     WHERE mb.id = p_mailbox)\n"
         "  SELECT e.uid, e.modseq FROM e;\n"
         "END $$;\n"
         "CREATE OR REPLACE FUNCTION tp_copy(p_src bigint, p_uids bigint[], p_dst bigint,\n"
         "    p_move boolean)\n"
         "RETURNS TABLE(src_uid bigint, dst_uid bigint)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  r record;\n"
         "  v_uid bigint;\n"
         "  v_modseq bigint;\n"
         "  v_src_modseq bigint;\n"
         "  v_freed bigint;\n"
         "  v_id bigint;\n"
         "BEGIN\n"
         "  IF p_src = p_dst THEN RAISE EXCEPTION 'tp_copy: same mailbox'; END IF;\n"
         "  PERFORM 1 FROM mailboxes mb WHERE mb.id IN (p_src, p_dst) ORDER BY mb.id FOR UPDATE;\n"
         "  FOR r IN SELECT m.* FROM messages m WHERE m.mailbox_id = p_src\n"
         "      AND m.uid = ANY(p_uids) AND NOT m.expunged ORDER BY m.uid LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1, highestmodseq = mb.highestmodseq + "
         "1,\n"
         "        used_bytes = mb.used_bytes + r.size\n"
         "      WHERE mb.id = p_dst RETURNING mb.uidnext - 1, mb.highestmodseq INTO v_uid, "
         "v_modseq;\n"
         "    IF NOT FOUND THEN RAISE EXCEPTION 'tp_copy: no mailbox %', p_dst; END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, hdr_date,\n"
         "        hdr_message_id, parts, search_text)\n"
         "      VALUES (p_dst, v_uid, v_modseq, r.flags, r.internaldate, r.size, r.blob_key,\n"
         "        r.envelope, r.bodystructure, r.body, r.hdr_from, r.hdr_to, r.hdr_cc,\n"
         "        r.hdr_subject, r.hdr_date, r.hdr_message_id, r.parts, r.search_text)\n"
         "      RETURNING id INTO v_id;\n"
         "    INSERT INTO message_words(message_id, search_tsv)\n"
         "      SELECT v_id, w.search_tsv FROM message_words w WHERE w.message_id = r.id;\n"
         "    src_uid := r.uid; dst_uid := v_uid;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  IF p_move THEN\n"
         /* the source row is locked (above) and written once */
         "    SELECT mb.highestmodseq + 1 INTO v_src_modseq FROM mailboxes mb WHERE mb.id = "
         "p_src;\n"
         "    WITH g AS (UPDATE messages m SET expunged = true, modseq = v_src_modseq\n"
         "      WHERE m.mailbox_id = p_src AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "      RETURNING m.size)\n"
         "    SELECT coalesce(sum(g.size), 0) INTO v_freed FROM g;\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_src_modseq,\n"
         "        used_bytes = mb.used_bytes - v_freed WHERE mb.id = p_src;\n"
         "  END IF;\n"
         "END $$;\n"
         /* store_flags: the same, plus whether each row changed (the
            changed rows' MODSEQs are consecutive: the mailbox row is
            locked, so the IMAP session knows whether anyone else wrote) */
         "DROP FUNCTION tp_store_flags(bigint, bigint[], text, text[], bigint);\n"
         "CREATE FUNCTION tp_store_flags(p_mailbox bigint, p_uids bigint[], p_mode text,\n"
         "    p_flags text[], p_unchangedsince bigint)\n"
         "RETURNS TABLE(uid bigint, modseq bigint, flags text[], failed boolean, changed boolean)\n"
         "LANGUAGE plpgsql AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "  v_start bigint;\n"
         "  r record;\n"
         "  v_new text[];\n"
         "BEGIN\n"
         "  IF p_mode NOT IN ('set', 'add', 'remove') THEN\n"
         "    RAISE EXCEPTION 'tp_store_flags: bad mode %', p_mode;\n"
         "  END IF;\n"
         "  SELECT mb.highestmodseq INTO v_modseq FROM mailboxes mb WHERE mb.id = p_mailbox FOR "
         "UPDATE;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  v_start := v_modseq;\n"
         "  FOR r IN SELECT m.id, m.uid, m.modseq, m.flags FROM messages m\n"
         "      WHERE m.mailbox_id = p_mailbox AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "      ORDER BY m.uid FOR UPDATE LOOP\n"
         "    IF p_unchangedsince IS NOT NULL AND r.modseq > p_unchangedsince THEN\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := true;\n"
         "      changed := false;\n"
         "      RETURN NEXT; CONTINUE;\n"
         "    END IF;\n"
         "    IF p_mode = 'set' THEN\n"
         "      v_new := ARRAY(SELECT DISTINCT f FROM unnest(p_flags) f ORDER BY f);\n"
         "    ELSIF p_mode = 'add' THEN\n"
         "      v_new := ARRAY(SELECT DISTINCT f FROM unnest(r.flags || p_flags) f ORDER BY f);\n"
         "    ELSE\n"
         "      v_new := ARRAY(SELECT f FROM unnest(r.flags) f WHERE f <> ALL(p_flags) ORDER BY "
         "f);\n"
         "    END IF;\n"
         "    IF v_new IS DISTINCT FROM ARRAY(SELECT f FROM unnest(r.flags) f ORDER BY f) THEN\n"
         "      v_modseq := v_modseq + 1;\n"
         "      UPDATE messages m SET flags = v_new, modseq = v_modseq WHERE m.id = r.id;\n"
         "      uid := r.uid; modseq := v_modseq; flags := v_new; failed := false;\n"
         "      changed := true;\n"
         "    ELSE\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := false;\n"
         "      changed := false;\n"
         "    END IF;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  IF v_modseq > v_start THEN\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_modseq WHERE mb.id = p_mailbox;\n"
         "  END IF;\n"
         "END $$;\n"},
        {4,
         "store functions: generic plans, no row locks in store_flags, words without a "
         "subtransaction; blob index over live messages only",
         /* the only reader of messages.blob_key by key is the blob GC, which
            asks for messages not expunged; indexing only those spares every
            EXPUNGE a new entry of a random 64-octet key (modseq being
            indexed, no update of messages is HOT) */
         "CREATE INDEX messages_blob_live ON messages(blob_key) WHERE NOT expunged;\n"
         "DROP INDEX messages_blob;\n"
         /* plpgsql planned the statements of these functions again on every
            call (custom plans: a parameter array makes the generic plan
            look dearer than it is), a third of tp_store_flags' time; every
            statement in them is an index lookup by mailbox and UID, which
            the generic plan does as well */
         "ALTER FUNCTION tp_deliver(bigint[], text, bigint, timestamptz, text[], text, text, "
         "text, text, text, text, text, timestamptz, text, jsonb, text)\n"
         "  SET plan_cache_mode = force_generic_plan;\n"
         "ALTER FUNCTION tp_expunge(bigint, bigint[]) SET plan_cache_mode = force_generic_plan;\n"
         "ALTER FUNCTION tp_copy(bigint, bigint[], bigint, boolean)\n"
         "  SET plan_cache_mode = force_generic_plan;\n"
         /* the exception block (a subtransaction per call) only where the
            limit can be reached: below 256 KB of UTF-8 a tsvector stays
            under its 1 MB (lexemes at most 1.5 times their text after
            lower-casing, plus 5 bytes of entry and position per distinct
            word of at least 2 input bytes: at most 2.75 bytes per byte) */
         "CREATE OR REPLACE FUNCTION tp_tsv(t text) RETURNS tsvector LANGUAGE plpgsql IMMUTABLE "
         "AS $$\n"
         "BEGIN\n"
         "  IF t IS NULL THEN RETURN NULL; END IF;\n"
         "  IF octet_length(t) <= 262144 THEN RETURN strip(to_tsvector('simple', t)); END IF;\n"
         "  BEGIN\n"
         "    RETURN strip(to_tsvector('simple', t));\n"
         "  EXCEPTION WHEN program_limit_exceeded THEN\n"
         "    RETURN strip(to_tsvector('simple', left(t, 65536)));\n"
         "  END;\n"
         "END $$;\n"
         /* store_flags: every writer of a mailbox's messages holds its
            mailbox row lock (taken first here), so the message rows need no
            lock of their own; the new flags are computed with array
            operators instead of a subquery per row */
         "CREATE OR REPLACE FUNCTION tp_store_flags(p_mailbox bigint, p_uids bigint[], "
         "p_mode text,\n"
         "    p_flags text[], p_unchangedsince bigint)\n"
         "RETURNS TABLE(uid bigint, modseq bigint, flags text[], failed boolean, changed boolean)\n"
         "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "  v_start bigint;\n"
         "  r record;\n"
         "  v_new text[];\n"
         "  v_set text[];\n"
         "  f text;\n"
         "BEGIN\n"
         "  IF p_mode NOT IN ('set', 'add', 'remove') THEN\n"
         "    RAISE EXCEPTION 'tp_store_flags: bad mode %', p_mode;\n"
         "  END IF;\n"
         "  SELECT mb.highestmodseq INTO v_modseq FROM mailboxes mb WHERE mb.id = p_mailbox FOR "
         "UPDATE;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  v_start := v_modseq;\n"
         "  v_set := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(p_flags, '{}')) x ORDER BY x);\n"
         "  FOR r IN SELECT m.id, m.uid, m.modseq, m.flags FROM messages m\n"
         "      WHERE m.mailbox_id = p_mailbox AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "      ORDER BY m.uid LOOP\n"
         "    IF p_unchangedsince IS NOT NULL AND r.modseq > p_unchangedsince THEN\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := true;\n"
         "      changed := false;\n"
         "      RETURN NEXT; CONTINUE;\n"
         "    END IF;\n"
         /* the stored arrays hold no duplicates, so set equality is two
            containments */
         "    IF p_mode = 'set' THEN\n"
         "      v_new := CASE WHEN r.flags @> v_set AND r.flags <@ v_set THEN r.flags\n"
         "                    ELSE v_set END;\n"
         "    ELSIF p_mode = 'add' THEN\n"
         "      v_new := r.flags;\n"
         "      FOREACH f IN ARRAY v_set LOOP\n"
         "        IF NOT f = ANY(v_new) THEN v_new := v_new || f; END IF;\n"
         "      END LOOP;\n"
         /* an added flag keeps the list sorted, as tp_store_flags always left it
            (APPEND stores flags in the client's order) */
         "      IF cardinality(v_new) > cardinality(r.flags) THEN\n"
         "        v_new := ARRAY(SELECT x FROM unnest(v_new) x ORDER BY x);\n"
         "      END IF;\n"
         "    ELSE\n"
         "      v_new := r.flags;\n"
         "      FOREACH f IN ARRAY v_set LOOP\n"
         "        v_new := array_remove(v_new, f);\n"
         "      END LOOP;\n"
         "    END IF;\n"
         "    IF v_new IS DISTINCT FROM r.flags THEN\n"
         "      v_modseq := v_modseq + 1;\n"
         "      UPDATE messages m SET flags = v_new, modseq = v_modseq WHERE m.id = r.id;\n"
         "      uid := r.uid; modseq := v_modseq; flags := v_new; failed := false;\n"
         "      changed := true;\n"
         "    ELSE\n"
         "      uid := r.uid; modseq := r.modseq; flags := r.flags; failed := false;\n"
         "      changed := false;\n"
         "    END IF;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  IF v_modseq > v_start THEN\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_modseq WHERE mb.id = p_mailbox;\n"
         "  END IF;\n"
         "END $$;\n"},
        {5, "expunged messages keep only what QRESYNC needs",
         /* A tombstone (expunged = true) is kept for QRESYNC/CONDSTORE: its
            UID and MODSEQ.  It kept the whole row too: after heavy churn
            most of the table (and of every per-mailbox scan) was the
            ENVELOPE, headers, part table and search text of expunged
            messages, and their words stayed in the word index.  Expunging
            now clears those columns and deletes the words; nothing reads
            them from an expunged row (FETCH, SEARCH, the blob GC and the
            API ask for live messages only).  Existing tombstones are
            cleared here, once. */
         "UPDATE messages SET envelope = NULL, bodystructure = NULL, body = NULL,\n"
         "    hdr_from = NULL, hdr_to = NULL, hdr_cc = NULL, hdr_subject = NULL,\n"
         "    hdr_date = NULL, hdr_message_id = NULL, parts = NULL, search_text = NULL\n"
         "  WHERE expunged AND (envelope IS NOT NULL OR search_text IS NOT NULL\n"
         "    OR parts IS NOT NULL OR body IS NOT NULL OR bodystructure IS NOT NULL);\n"
         "DELETE FROM message_words w USING messages m WHERE m.id = w.message_id AND m.expunged;\n"
         "CREATE OR REPLACE FUNCTION tp_expunge(p_mailbox bigint, p_uids bigint[])\n"
         "RETURNS TABLE(uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$\n"
         "DECLARE\n"
         "  v_modseq bigint;\n"
         "BEGIN\n"
         "  SELECT mb.highestmodseq + 1 INTO v_modseq FROM mailboxes mb WHERE mb.id = p_mailbox\n"
         "    FOR UPDATE;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  IF p_uids IS NULL THEN\n"
         "    p_uids := ARRAY(SELECT m.uid FROM messages m WHERE m.mailbox_id = p_mailbox\n"
         "      AND NOT m.expunged AND '\\Deleted' = ANY(m.flags));\n"
         "  END IF;\n"
         "  RETURN QUERY WITH e AS (\n"
         "    UPDATE messages m SET expunged = true, modseq = v_modseq,\n"
         "        envelope = NULL, bodystructure = NULL, body = NULL,\n"
         "        hdr_from = NULL, hdr_to = NULL, hdr_cc = NULL, hdr_subject = NULL,\n"
         "        hdr_date = NULL, hdr_message_id = NULL, parts = NULL, search_text = NULL\n"
         "     WHERE m.mailbox_id = p_mailbox AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "       AND '\\Deleted' = ANY(m.flags)\n"
         "    RETURNING m.id, m.uid, m.modseq, m.size),\n"
         "  w AS (DELETE FROM message_words w USING e WHERE w.message_id = e.id),\n"
         "  u AS (\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_modseq,\n"
         "        used_bytes = mb.used_bytes - coalesce((SELECT sum(e.size) FROM e), 0)\n"
         "     WHERE mb.id = p_mailbox)\n"
         "  SELECT e.uid, e.modseq FROM e;\n"
         "END $$;\n"
         "CREATE OR REPLACE FUNCTION tp_copy(p_src bigint, p_uids bigint[], p_dst bigint,\n"
         "    p_move boolean)\n"
         "RETURNS TABLE(src_uid bigint, dst_uid bigint)\n"
         "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$\n"
         "DECLARE\n"
         "  r record;\n"
         "  v_uid bigint;\n"
         "  v_modseq bigint;\n"
         "  v_src_modseq bigint;\n"
         "  v_freed bigint;\n"
         "  v_id bigint;\n"
         "BEGIN\n"
         "  IF p_src = p_dst THEN RAISE EXCEPTION 'tp_copy: same mailbox'; END IF;\n"
         "  PERFORM 1 FROM mailboxes mb WHERE mb.id IN (p_src, p_dst) ORDER BY mb.id FOR UPDATE;\n"
         "  FOR r IN SELECT m.* FROM messages m WHERE m.mailbox_id = p_src\n"
         "      AND m.uid = ANY(p_uids) AND NOT m.expunged ORDER BY m.uid LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,\n"
         "        highestmodseq = mb.highestmodseq + 1, used_bytes = mb.used_bytes + r.size\n"
         "      WHERE mb.id = p_dst\n"
         "      RETURNING mb.uidnext - 1, mb.highestmodseq INTO v_uid, v_modseq;\n"
         "    IF NOT FOUND THEN RAISE EXCEPTION 'tp_copy: no mailbox %', p_dst; END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, hdr_date,\n"
         "        hdr_message_id, parts, search_text)\n"
         "      VALUES (p_dst, v_uid, v_modseq, r.flags, r.internaldate, r.size, r.blob_key,\n"
         "        r.envelope, r.bodystructure, r.body, r.hdr_from, r.hdr_to, r.hdr_cc,\n"
         "        r.hdr_subject, r.hdr_date, r.hdr_message_id, r.parts, r.search_text)\n"
         "      RETURNING id INTO v_id;\n"
         "    INSERT INTO message_words(message_id, search_tsv)\n"
         "      SELECT v_id, w.search_tsv FROM message_words w WHERE w.message_id = r.id;\n"
         "    src_uid := r.uid; dst_uid := v_uid;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "  IF p_move THEN\n"
         "    SELECT mb.highestmodseq + 1 INTO v_src_modseq FROM mailboxes mb\n"
         "      WHERE mb.id = p_src;\n"
         "    WITH g AS (UPDATE messages m SET expunged = true, modseq = v_src_modseq,\n"
         "        envelope = NULL, bodystructure = NULL, body = NULL,\n"
         "        hdr_from = NULL, hdr_to = NULL, hdr_cc = NULL, hdr_subject = NULL,\n"
         "        hdr_date = NULL, hdr_message_id = NULL, parts = NULL, search_text = NULL\n"
         "      WHERE m.mailbox_id = p_src AND m.uid = ANY(p_uids) AND NOT m.expunged\n"
         "      RETURNING m.id, m.size),\n"
         "    w AS (DELETE FROM message_words w USING g WHERE w.message_id = g.id)\n"
         "    SELECT coalesce(sum(g.size), 0) INTO v_freed FROM g;\n"
         "    UPDATE mailboxes mb SET highestmodseq = v_src_modseq,\n"
         "        used_bytes = mb.used_bytes - v_freed WHERE mb.id = p_src;\n"
         "  END IF;\n"
         "END $$;\n"},
        {6, "outbound queue: a message's age in whole seconds, rounded down",
         /* created was rounded to the nearest second, the clock it is
            compared with (time(2)) is truncated: a message could look up to
            half a second younger than it is, and its delay notice came one
            attempt late */
         "CREATE OR REPLACE FUNCTION tp_queue_claim(p_owner text, p_lease_ms bigint, p_limit "
         "integer)\n"
         "RETURNS TABLE(rcpt_id bigint, message_id bigint, rcpt text, attempts integer,\n"
         "    dsn_notify text, dsn_orcpt text, delay_notified boolean, sender text, blob_key "
         "text,\n"
         "    size bigint, account_id bigint, dsn_ret text, dsn_envid text, created bigint)\n"
         "LANGUAGE sql AS $$\n"
         "  WITH cand AS (\n"
         "    SELECT r.id, r.message_id, r.next_attempt FROM queue_rcpts r\n"
         "     WHERE r.status = 'pending' AND r.next_attempt <= now()\n"
         "       AND (r.lease_until IS NULL OR r.lease_until <= now())\n"
         "     ORDER BY r.next_attempt, r.id\n"
         "     LIMIT greatest(p_limit, 1) * 16\n"
         "     FOR UPDATE SKIP LOCKED),\n"
         "  msgs AS (\n"
         "    SELECT c.message_id FROM cand c GROUP BY c.message_id\n"
         "     ORDER BY min(c.next_attempt), c.message_id LIMIT greatest(p_limit, 1)),\n"
         "  upd AS (\n"
         "    UPDATE queue_rcpts r SET lease_owner = p_owner,\n"
         "        lease_until = now() + p_lease_ms * interval '1 millisecond',\n"
         "        attempts = r.attempts + 1, updated = now()\n"
         "      FROM cand c\n"
         "     WHERE r.id = c.id AND c.message_id IN (SELECT m.message_id FROM msgs m)\n"
         "    RETURNING r.id, r.message_id, r.rcpt, r.attempts, r.dsn_notify, r.dsn_orcpt,\n"
         "              r.delay_notified)\n"
         "  SELECT u.id, u.message_id, u.rcpt, u.attempts, u.dsn_notify, u.dsn_orcpt,\n"
         "         u.delay_notified, q.sender, q.blob_key, q.size, q.account_id, q.dsn_ret,\n"
         "         q.dsn_envid, floor(extract(epoch FROM q.created))::bigint\n"
         "    FROM upd u JOIN queue_messages q ON q.id = u.message_id\n"
         "   ORDER BY u.message_id, u.id $$;\n"},
        {7,
         "IMAP APPEND reserves its blobs with the mailbox lookup; delivery requires the "
         "reservation",
         /* APPEND looked the mailbox up, put the blobs, then tp_deliver
            referenced them; unlike SMTP delivery it never reserved them, so
            a blob of the same content lying unreferenced past the grace
            could be collected between the put (which finds it there and
            writes nothing) and tp_deliver: a message without its blob.
            The reservation rides on the lookup.  Its commit need not wait
            for the WAL flush: it only has to be visible to the collector,
            and should a crash lose it, tp_deliver (below) finds the row
            gone or holds it, so nothing is acknowledged without its
            bytes (at worst an object stays without a row). */
         "CREATE FUNCTION tp_append_begin(p_account bigint, p_name text, p_keys text[],\n"
         "    p_sizes bigint[])\n"
         "RETURNS TABLE(id bigint, uidvalidity bigint, quota bigint, used bigint)\n"
         "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$\n"
         "BEGIN\n"
         /* the usage (the mailboxes' running totals) only with a quota */
         "  SELECT mb.id, mb.uidvalidity, ac.quota_bytes,\n"
         "         CASE WHEN ac.quota_bytes > 0 THEN\n"
         "           (SELECT coalesce(sum(x.used_bytes), 0) FROM mailboxes x\n"
         "             WHERE x.account_id = p_account)\n"
         "         ELSE 0 END\n"
         "    INTO id, uidvalidity, quota, used\n"
         "    FROM accounts ac LEFT JOIN mailboxes mb ON mb.account_id = ac.id AND mb.name = "
         "p_name\n"
         "   WHERE ac.id = p_account;\n"
         "  IF NOT FOUND THEN RETURN; END IF;\n"
         "  IF id IS NOT NULL AND cardinality(p_keys) > 0 THEN\n"
         "    PERFORM set_config('synchronous_commit', 'off', true);\n"
         /* one row per key (the same message twice in a MULTIAPPEND), in
            key order (two reservers of the same keys never deadlock) */
         "    INSERT INTO blobs AS b(key, size)\n"
         "      SELECT DISTINCT ON (u.k) u.k, u.s FROM unnest(p_keys, p_sizes) AS u(k, s)\n"
         "       ORDER BY u.k\n"
         "    ON CONFLICT (key) DO UPDATE SET last_used = now();\n"
         "  END IF;\n"
         "  RETURN NEXT;\n"
         "END $$;\n"
         /* every caller reserves its blob before the put (SMTP with
            tp_blob_reserve, IMAP with tp_append_begin).  Holding the row
            (KEY SHARE, which the collector's FOR UPDATE SKIP LOCKED steps
            around) keeps it referenced from here to the commit.  A row that
            is gone was collected since: the put may have found the object
            there just before it went, so the delivery fails (the caller
            retries, reserving and putting again) rather than refer to bytes
            that may be gone.  This also covers a reservation lost with an
            asynchronous commit in a crash, and a put slower than the grace.
            Before, the insert or refresh of the row here wrote a second
            version of it per delivery and could not tell. */
         "CREATE OR REPLACE FUNCTION tp_deliver(p_mailboxes bigint[], p_blob text, p_size "
         "bigint,\n"
         "    p_internaldate timestamptz, p_flags text[], p_envelope text, p_bodystructure "
         "text,\n"
         "    p_body text, p_from text, p_to text, p_cc text, p_subject text,\n"
         "    p_date timestamptz, p_message_id text, p_parts jsonb, p_search text)\n"
         "RETURNS TABLE(mailbox_id bigint, uid bigint, modseq bigint)\n"
         "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$\n"
         "DECLARE\n"
         "  v_tsv tsvector := tp_tsv(left(p_search, 262144));\n"
         "  v_mb bigint;\n"
         "  v_id bigint;\n"
         "BEGIN\n"
         "  IF p_mailboxes IS NULL OR cardinality(p_mailboxes) = 0 THEN\n"
         "    RAISE EXCEPTION 'tp_deliver: no mailbox';\n"
         "  END IF;\n"
         "  PERFORM 1 FROM blobs b WHERE b.key = p_blob FOR KEY SHARE;\n"
         "  IF NOT FOUND THEN\n"
         "    RAISE EXCEPTION 'tp_deliver: blob % is not reserved', p_blob\n"
         "      USING ERRCODE = 'serialization_failure';\n"
         "  END IF;\n"
         "  FOR v_mb IN SELECT DISTINCT m FROM unnest(p_mailboxes) AS m ORDER BY m LOOP\n"
         "    UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,\n"
         "                          highestmodseq = mb.highestmodseq + 1,\n"
         "                          used_bytes = mb.used_bytes + p_size\n"
         "      WHERE mb.id = v_mb\n"
         "      RETURNING mb.id, mb.uidnext - 1, mb.highestmodseq INTO mailbox_id, uid, modseq;\n"
         "    IF NOT FOUND THEN\n"
         "      RAISE EXCEPTION 'tp_deliver: no mailbox %', v_mb USING ERRCODE = "
         "'foreign_key_violation';\n"
         "    END IF;\n"
         "    INSERT INTO messages(mailbox_id, uid, modseq, flags, internaldate, size, blob_key,\n"
         "        envelope, bodystructure, body, hdr_from, hdr_to, hdr_cc, hdr_subject, "
         "hdr_date,\n"
         "        hdr_message_id, parts, search_text)\n"
         "      VALUES (mailbox_id, uid, modseq, coalesce(p_flags, '{}'),\n"
         "        coalesce(p_internaldate, now()), p_size, p_blob, p_envelope, "
         "p_bodystructure,\n"
         "        p_body, p_from, p_to, p_cc, p_subject, p_date, p_message_id, p_parts,\n"
         "        left(p_search, 1048576))\n"
         "      RETURNING id INTO v_id;\n"
         "    IF v_tsv IS NOT NULL THEN\n"
         "      INSERT INTO message_words(message_id, search_tsv) VALUES (v_id, v_tsv);\n"
         "    END IF;\n"
         "    RETURN NEXT;\n"
         "  END LOOP;\n"
         "END $$;\n"},
};

int schema_latest(void)
{
	return migrations[ARRAY_SIZE(migrations) - 1].version;
}

size_t schema_utf8_truncate(const char *s, size_t len, size_t max)
{
	size_t n;

	if (len <= max)
		return len;
	n = max;
	/* back off over continuation bytes (10xxxxxx) to the start of the
	 * sequence that would be split; a sequence has at most 3 of them
	 * (RFC 3629 3), so invalid input is cut at max instead of eaten */
	for (int k = 0; k < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; k++)
		n--;
	if (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		return max;
	return n;
}

int schema_version(PGconn *c, int *version_r, char *err, size_t errsz)
{
	PGresult *res;

	*version_r = 0;
	res = pg_exec(c, "SELECT to_regclass('schema_version') IS NOT NULL", 0, NULL, err, errsz,
	              NULL);
	if (res == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	res = pg_exec(c, "SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL, err,
	              errsz, NULL);
	if (res == NULL)
		return -1;
	*version_r = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static int exec_simple(PGconn *c, const char *sql, char *err, size_t errsz)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		const char *prim =
		        res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
		snprintf(err, errsz, "%s", prim != NULL ? prim : PQerrorMessage(c));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

int schema_migrate(PGconn *c, int *from_r, int *to_r, char *err, size_t errsz)
{
	int from = 0, cur = 0, rc = -1;
	bool locked = false;
	char why[512];

	if (exec_simple(c, "SELECT pg_advisory_lock(" SCHEMA_LOCK_KEY ")", why, sizeof(why)) < 0) {
		snprintf(err, errsz, "migration lock: %s", why);
		goto fail;
	}
	locked = true;
	/* read the version only under the lock: a concurrent migrator may have
	 * just finished */
	if (schema_version(c, &from, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "schema version: %s", why);
		goto fail;
	}
	cur = from;
	if (from > schema_latest()) {
		snprintf(err, errsz,
		         "database schema is version %d, newer than this build (%d): upgrade "
		         "tailpost-mailbox",
		         from, schema_latest());
		goto fail;
	}
	for (size_t i = 0; i < ARRAY_SIZE(migrations); i++) {
		const struct migration *m = &migrations[i];
		char ver[16];
		const char *params[2];
		PGresult *res;

		if (m->version <= cur)
			continue;
		if (exec_simple(c, "BEGIN", why, sizeof(why)) < 0 ||
		    exec_simple(c, m->sql, why, sizeof(why)) < 0) {
			snprintf(err, errsz, "migration %d (%s): %s", m->version, m->name, why);
			exec_simple(c, "ROLLBACK", why, sizeof(why));
			goto fail;
		}
		snprintf(ver, sizeof(ver), "%d", m->version);
		params[0] = ver;
		params[1] = m->name;
		res = pg_exec(c, "INSERT INTO schema_version(version, name) VALUES ($1, $2)", 2,
		              params, why, sizeof(why), NULL);
		if (res == NULL || exec_simple(c, "COMMIT", why, sizeof(why)) < 0) {
			snprintf(err, errsz, "migration %d (%s): %s", m->version, m->name, why);
			PQclear(res);
			exec_simple(c, "ROLLBACK", why, sizeof(why));
			goto fail;
		}
		PQclear(res);
		cur = m->version;
	}
	rc = 0;
fail:
	if (locked)
		exec_simple(c, "SELECT pg_advisory_unlock(" SCHEMA_LOCK_KEY ")", why, sizeof(why));
	if (from_r != NULL)
		*from_r = from;
	if (to_r != NULL)
		*to_r = cur;
	return rc;
}

int schema_check_version(PGconn *c, char *err, size_t errsz)
{
	int v = 0;
	char why[512];

	if (schema_version(c, &v, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "database schema version: %s", why);
		return -1;
	}
	if (v < schema_latest()) {
		snprintf(err, errsz,
		         "database schema is version %d, this build needs %d: run "
		         "'tailpost-mailbox migrate'",
		         v, schema_latest());
		return -1;
	}
	if (v > schema_latest()) {
		snprintf(err, errsz,
		         "database schema is version %d, newer than this build (%d): upgrade "
		         "tailpost-mailbox",
		         v, schema_latest());
		return -1;
	}
	return 0;
}
