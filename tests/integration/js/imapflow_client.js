// tests/integration/js/imapflow_client.js -- drive tailpost's IMAP server
// with the imapflow client (npm), as a mail app would: login, list,
// select, fetch envelope + source, set flags, append, move, IDLE until
// another connection's APPEND shows up as EXISTS, search, logout.
//
// Usage: node imapflow_client.js '<json>' with host, port, user, pass, ca
// (PEM path), optional localAddress; prints one JSON object of results.
// Run with NODE_PATH=var/node/node_modules.
'use strict';

const fs = require('fs');
const { ImapFlow } = require('imapflow');

const cfg = JSON.parse(process.argv[2]);

function client() {
    const tls = { ca: [fs.readFileSync(cfg.ca)], servername: 'localhost', minVersion: 'TLSv1.2' };
    if (cfg.localAddress) {
        tls.localAddress = cfg.localAddress;
    }
    return new ImapFlow({
        host: cfg.host,
        port: cfg.port,
        secure: true,
        tls,
        auth: { user: cfg.user, pass: cfg.pass },
        logger: false,
        disableAutoIdle: true
    });
}

function message(subject, body) {
    return (
        'From: Bob <bob@example.net>\r\n' +
        'To: Alice <alice@example.org>\r\n' +
        `Subject: ${subject}\r\n` +
        'Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n' +
        `Message-ID: <${subject.replace(/\s+/g, '-')}@example.net>\r\n` +
        '\r\n' +
        body
    );
}

function withTimeout(p, ms, what) {
    let t;
    return Promise.race([
        p,
        new Promise((_, reject) => {
            t = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
        })
    ]).finally(() => clearTimeout(t));
}

async function main() {
    const out = {};
    const c = client();
    await c.connect();

    out.list = (await c.list()).map(m => ({ path: m.path, specialUse: m.specialUse || null }));

    const first = message('imapflow first', 'hello from imapflow\r\n');
    const appended = await c.append('INBOX', first, ['\\Seen'], new Date('2026-11-26T10:00:00Z'));
    out.append_uid = appended.uid;

    const box = await c.mailboxOpen('INBOX');
    out.exists = box.exists;
    out.uidValidity = String(box.uidValidity);

    const m = await c.fetchOne('*', { uid: true, envelope: true, source: true, flags: true });
    out.fetched_uid = m.uid;
    out.envelope_subject = m.envelope.subject;
    out.envelope_from = m.envelope.from.map(a => a.address);
    out.source_equal = m.source.toString('binary') === first;
    out.flags_before = [...m.flags].sort();

    await c.messageFlagsAdd({ uid: m.uid }, ['\\Flagged', 'Important'], { uid: true });
    const f = await c.fetchOne(String(m.uid), { uid: true, flags: true }, { uid: true });
    out.flags_after = [...f.flags].sort();

    const moved = await c.messageMove(String(m.uid), 'Archive', { uid: true });
    out.move_uidmap = moved && moved.uidMap ? [...moved.uidMap.entries()] : null;
    out.inbox_after_move = (await c.status('INBOX', { messages: true })).messages;

    // IDLE in INBOX until another connection's APPEND arrives as EXISTS
    await c.mailboxOpen('INBOX');
    const existsSeen = new Promise(resolve => c.once('exists', d => resolve(d)));
    const idling = c.idle();
    await new Promise(r => setTimeout(r, 300));
    const other = client();
    await other.connect();
    await other.append('INBOX', message('imapflow second', 'while idling\r\n'));
    await other.logout();
    const ev = await withTimeout(existsSeen, 15000, 'EXISTS during IDLE');
    out.idle_exists = { count: ev.count, prevCount: ev.prevCount };
    // the next command ends IDLE
    out.search_second = await c.search({ subject: 'imapflow second' }, { uid: true });
    await withTimeout(idling, 15000, 'IDLE end');

    await c.mailboxOpen('Archive');
    out.search_archive = await c.search({ subject: 'imapflow first' }, { uid: true });
    out.search_flagged = await c.search({ flagged: true }, { uid: true });
    out.search_body = await c.search({ body: 'hello from imapflow' }, { uid: true });
    const a = await c.fetchOne('*', { uid: true, source: true, flags: true });
    out.archive_source_equal = a.source.toString('binary') === first;
    out.archive_flags = [...a.flags].sort();

    await c.logout();
    process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch(err => {
    process.stdout.write(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }) + '\n');
    process.exit(1);
});
