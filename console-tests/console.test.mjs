// Browser tests of the operator console. playwright-core drives Debian's
// headless chromium (no browser download); the test starts a real
// doorstep-sync-server on 127.0.0.1 with an ephemeral port and a demo
// registry seeded by real phones syncing over HTTP, and a real phone (the
// doorstep CLI) enrols from the QR code the console shows.
//
//   DOORSTEP_BIN_DIR   where doorstep-sync-server and doorstep are (default ../target/debug)
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR     where screenshots go (default ../target/console-screenshots)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '..');
const binDir = process.env.DOORSTEP_BIN_DIR ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug');
const serverBin = join(binDir, 'doorstep-sync-server');
const cliBin = join(binDir, 'doorstep');
const shots = process.env.SCREENSHOT_DIR ?? join(root, 'target', 'console-screenshots');
const ADMIN = { user: 'admin', password: 'admin-password-for-tests' };
const OPERATOR = { user: 'operator1', password: 'operator-password-for-tests' };

let work, server, base, browser;

/** Resolves each pattern with its match on the first stdout line that matches it. */
function watchLines(child, patterns, timeoutMs) {
  const lines = createInterface({ input: child.stdout });
  return patterns.map(
    (pattern) =>
      new Promise((resolveLine, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}`)), timeoutMs);
        lines.on('line', (line) => {
          if (line.startsWith('demo failed')) reject(new Error(line));
          const m = line.match(pattern);
          if (m) {
            clearTimeout(timer);
            resolveLine(m);
          }
        });
        child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
      }),
  );
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'doorstep-console-'));
  mkdirSync(shots, { recursive: true });
  const db = join(work, 'server.db');
  const commune = join(work, 'commune.jsonl');
  writeFileSync(commune, execFileSync('python3', [join(root, 'bench', 'gen_households.py'), '60']));
  execFileSync(serverBin, ['--db', db, 'create-admin', '--username', ADMIN.user], {
    env: { ...process.env, DOORSTEP_ADMIN_PASSWORD: ADMIN.password },
  });
  execFileSync(serverBin, ['--db', db, 'add-operator', '--username', OPERATOR.user], {
    env: { ...process.env, DOORSTEP_OPERATOR_PASSWORD: OPERATOR.password },
  });
  server = spawn(serverBin, ['--db', db, 'serve', '--listen', '127.0.0.1:0', '--insecure-http', '--demo', commune], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  server.stdout.on('data', (d) => process.stderr.write(`[server] ${d}`));
  const [listening, ready] = watchLines(
    server,
    [/listening on (127\.0\.0\.1:\d+)/, /demo ready: .* (\d+) open conflicts, (\d+) open duplicates/],
    180_000,
  );
  base = `http://${(await listening)[1]}`;
  const [, conflicts, duplicates] = await ready;
  assert.ok(Number(conflicts) >= 3 && Number(duplicates) >= 2, `demo: ${conflicts} conflicts, ${duplicates} duplicates`);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (work) rmSync(work, { recursive: true, force: true });
});

async function loggedIn(who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/progress`);
  await page.fill('input[name=username]', who.user);
  await page.fill('input[name=password]', who.password);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/console\/progress/);
  return { context, page };
}

function phone(...args) {
  return execFileSync(cliBin, ['--store', join(work, 'phone.db'), '--profile', 'officer-z', ...args], {
    env: { ...process.env, DOORSTEP_PIN: '135790' },
    encoding: 'utf8',
  });
}

test('login: a page without a session goes to login, a wrong password is refused, the right one gets in', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/console/conflicts`);
  assert.match(page.url(), /\/console\/login\?next=%2Fconsole%2Fconflicts/);
  await page.screenshot({ path: join(shots, 'login.png') });
  await page.fill('input[name=username]', ADMIN.user);
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await page.waitForURL(/failed=1/);
  assert.ok(await page.isVisible('text=Wrong name or password'));
  await page.fill('input[name=username]', ADMIN.user);
  await page.fill('input[name=password]', ADMIN.password);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/console\/conflicts$/);
  assert.ok(await page.isVisible('text=admin (admin)'));
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'doorstep_session');
  assert.ok(session && session.httpOnly && session.secure && session.sameSite === 'Strict', JSON.stringify(session));
  await context.close();
});

test('conflicts: values side by side with device, user and time; picking one resolves it', async () => {
  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/conflicts`);
  const cards = page.locator('article.card');
  const before = await cards.count();
  assert.ok(before >= 3, `open conflicts: ${before}`);
  const first = cards.first();
  assert.equal(await first.locator('.side').count(), 2);
  const sideText = await first.locator('.side').first().innerText();
  assert.match(sideText, /officer-/);
  assert.match(sideText, /\d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
  await page.screenshot({ path: join(shots, 'conflicts.png'), fullPage: true });
  const id = (await first.getAttribute('id')).replace('conflict-', '');
  const chosen = await first.locator('.side .value').nth(1).innerText();
  await first.locator('.side').nth(1).locator('button', { hasText: 'Keep this value' }).click();
  await page.waitForURL(/done=/);
  assert.ok(await page.isVisible(`text=Conflict #${id} resolved`));
  assert.equal(await page.locator('article.card').count(), before - 1);
  await page.goto(`${base}/console/conflicts?status=resolved`);
  assert.ok(await page.isVisible(`#conflict-${id} >> text=resolved`));
  // The household now reads the chosen value, written as the operator's change.
  const doc = await page.locator(`#conflict-${id} a[href^="/console/households/"]`).first().getAttribute('href');
  await page.goto(`${base}${doc}`);
  assert.ok((await page.innerText('main')).includes(chosen));
  assert.ok(await page.isVisible(`td:text-is("${OPERATOR.user}")`));
  await context.close();
});

test('duplicates: match probability and comparison weights; merge links the records, undo reopens, dismiss closes', async () => {
  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/duplicates`);
  const cards = page.locator('article.card');
  assert.ok((await cards.count()) >= 2);
  const first = cards.first();
  assert.match(await first.locator('.score').innerText(), /\d+%/);
  assert.ok((await first.locator('table.weights tbody tr').count()) >= 3);
  assert.match(await first.locator('table.weights').innerText(), /Date of birth/);
  await page.screenshot({ path: join(shots, 'duplicates.png'), fullPage: true });
  const id = (await first.getAttribute('id')).replace('duplicate-', '');
  await first.locator('button', { hasText: 'Merge' }).click();
  await page.waitForURL(/status=merged/);
  assert.ok(await page.isVisible(`text=Merged #${id}`));
  const merged = page.locator(`#duplicate-${id}`);
  assert.ok(await merged.isVisible());
  assert.match(await merged.innerText(), new RegExp(`merge — ${OPERATOR.user}`));
  await page.screenshot({ path: join(shots, 'duplicate-merged.png'), fullPage: true });
  await merged.locator('button', { hasText: 'Undo' }).click();
  await page.waitForURL(/status=open/);
  assert.ok(await page.isVisible(`text=Undid #${id}`));
  assert.match(await page.locator(`#duplicate-${id}`).innerText(), /unmerge/);
  // Every decision is in both households' audit trails.
  const doc = await page.locator(`#duplicate-${id} a[href^="/console/households/"]`).first().getAttribute('href');
  await page.goto(`${base}${doc}`);
  const trail = await page.innerText('main');
  assert.match(trail, new RegExp(`merge duplicate #${id}`));
  assert.match(trail, new RegExp(`unmerge duplicate #${id}`));
  // Dismiss another.
  await page.goto(`${base}/console/duplicates`);
  const other = page.locator('article.card').last();
  const otherId = (await other.getAttribute('id')).replace('duplicate-', '');
  await other.locator('button', { hasText: 'Not the same person' }).click();
  await page.waitForURL(/done=/);
  assert.ok(await page.isVisible(`text=Dismissed #${otherId}`));
  assert.equal(await page.locator(`#duplicate-${otherId}`).count(), 0);
  await context.close();
});

test('devices: an admin enrols a phone by QR and revokes it; the phone wipes itself', async () => {
  const { context, page } = await loggedIn(ADMIN);
  await page.goto(`${base}/console/devices`);
  const before = await page.locator('tbody tr').count();
  await page.fill('input[name=area]', '01.002.00001');
  await page.click('button:has-text("Create QR code")');
  const img = page.locator('.qr img');
  await img.waitFor();
  await page.screenshot({ path: join(shots, 'enrol.png'), fullPage: true });
  const src = await img.getAttribute('src');
  assert.match(src, /^data:image\/png;base64,/);
  const qr = join(work, 'enrol.png');
  writeFileSync(qr, Buffer.from(src.split(',')[1], 'base64'));
  phone('create-profile', 'officer-z');
  assert.match(phone('enrol', qr), /enrolled device (\S+)/);
  phone('sync');
  await page.goto(`${base}/console/devices`);
  assert.equal(await page.locator('tbody tr').count(), before + 1);
  const row = page.locator('tbody tr').last();
  assert.match(await row.innerText(), /just now/);
  await page.screenshot({ path: join(shots, 'devices.png'), fullPage: true });
  await row.locator('button', { hasText: 'Revoke' }).click();
  // A revocation wipes the phone: the console asks first.
  await page.locator('button', { hasText: 'Revoke and wipe' }).waitFor();
  await page.screenshot({ path: join(shots, 'revoke-confirm.png') });
  await page.locator('button', { hasText: 'Revoke and wipe' }).click();
  await page.waitForURL(/done=/);
  assert.match(await page.locator('tbody tr').last().innerText(), /revoked/);
  assert.throws(() => phone('sync'), /revoked/);
  await context.close();
});

test('progress: counts per sub-area, CSV export, and a slip the phone verifies offline', async () => {
  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/progress?area=01.002`);
  const rows = page.locator('table.progress tbody tr');
  assert.equal(await rows.count(), 4, 'three communes and a total');
  const total = await rows.last().innerText();
  assert.match(total, /Total\s+63\s/);
  await page.screenshot({ path: join(shots, 'progress.png'), fullPage: true });
  const csv = await page.request.get(`${base}/console/progress.csv?area=01.002`);
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()['content-type'], /text\/csv/);
  const lines = (await csv.text()).trim().split('\n');
  assert.match(lines[0], /^area,households,residents,complete/);
  assert.equal(lines.length, 5);
  assert.match(lines[4], /^01\.002,63,/);

  // A printable slip; its QR is signed by the server and verified by a phone with no network.
  await page.goto(`${base}/console/households/01.002.00004-000002/slip`);
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: join(shots, 'slip-print.png'), fullPage: true });
  const src = await page.locator('.qr img').getAttribute('src');
  const qr = join(work, 'slip.png');
  writeFileSync(qr, Buffer.from(src.split(',')[1], 'base64'));
  const store = join(work, 'verifier.db');
  const verifier = (...args) =>
    execFileSync(cliBin, ['--store', store, '--profile', 'checker', ...args], {
      env: { ...process.env, DOORSTEP_PIN: '135790' },
      encoding: 'utf8',
    });
  verifier('create-profile', 'checker');
  await page.emulateMedia({ media: 'screen' });
  await context.close();
  const admin = await loggedIn(ADMIN);
  await admin.page.goto(`${base}/console/devices`);
  await admin.page.fill('input[name=area]', '01.002.00004');
  await admin.page.click('button:has-text("Create QR code")');
  const enrolSrc = await admin.page.locator('.qr img').getAttribute('src');
  const enrolQr = join(work, 'enrol-verifier.png');
  writeFileSync(enrolQr, Buffer.from(enrolSrc.split(',')[1], 'base64'));
  verifier('enrol', enrolQr);
  server.kill('SIGSTOP'); // no network from here on
  try {
    assert.match(verifier('verify-slip', qr), /valid slip for household 01\.002\.00004-000002/);
  } finally {
    server.kill('SIGCONT');
  }
  await admin.context.close();
});

test('households: found by a name typed without diacritics, then its page and slip', async () => {
  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/households?area=01.002.00004`);
  const first = page.locator('tbody tr').first();
  const names = await first.locator('td').nth(2).innerText();
  const plain = names.split(',')[0].normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/đ/g, 'd').replace(/Đ/g, 'D').toLowerCase();
  await page.fill('input[name=q]', plain);
  await page.click('button:has-text("Search")');
  await page.waitForURL(/q=/);
  assert.ok((await page.locator('tbody tr').count()) >= 1);
  assert.match(await page.innerText('tbody'), new RegExp(names.split(',')[0]));
  await page.screenshot({ path: join(shots, 'households.png'), fullPage: true });
  await page.locator('tbody tr a[href^="/console/households/"]').first().click();
  assert.ok(await page.isVisible('text=Print verification slip'));
  await context.close();
});

test('review: an officer verifies, an operator returns it with a comment, the phone fixes it, the operator approves', async () => {
  const reviewer = (...args) =>
    execFileSync(cliBin, ['--store', join(work, 'review-phone.db'), '--profile', 'officer-r', ...args], {
      env: { ...process.env, DOORSTEP_PIN: '135790' },
      encoding: 'utf8',
    });
  // An admin enrols the officer's phone for commune 01.002.00004.
  const admin = await loggedIn(ADMIN);
  await admin.page.goto(`${base}/console/devices`);
  await admin.page.fill('input[name=area]', '01.002.00004');
  await admin.page.click('button:has-text("Create QR code")');
  const src = await admin.page.locator('.qr img').getAttribute('src');
  const qr = join(work, 'review-enrol.png');
  writeFileSync(qr, Buffer.from(src.split(',')[1], 'base64'));
  await admin.context.close();
  reviewer('create-profile', 'officer-r');
  reviewer('enrol', qr);
  reviewer('sync');
  const id = reviewer('list').split('\n')[0].split(/\s+/)[0];
  assert.match(id, /^01\.002\.00004-/);
  assert.match(reviewer('verify', id), /verified by officer-r/);
  reviewer('sync');

  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/review?status=waiting&area=01.002.00004`);
  await page.locator(`a[href="/console/households/${id}"]`).click();
  assert.match(await page.innerText('#review-status'), /Waiting for review/);
  assert.match(await page.innerText('section.review'), /verified — officer-r/);
  await page.fill('textarea[name=comment]', 'Ngày sinh của chủ hộ chưa đúng · check the head\'s date of birth');
  await page.click('button:has-text("Return for correction")');
  await page.waitForURL(/done=/);
  assert.match(await page.innerText('#review-status'), /Returned for correction/);
  await page.screenshot({ path: join(shots, 'review-returned.png'), fullPage: true });

  // The phone sees it at its next sync, with the comment; the officer fixes the household.
  reviewer('sync');
  assert.match(reviewer('returned'), new RegExp(`${id.replace(/\./g, '\\.')}  returned for correction by operator1 .*check the head's date of birth`));
  reviewer('set', id, 'address', 'Số 7, Thôn Đông (đã sửa)');
  reviewer('sync');
  assert.match(reviewer('returned'), /no household is returned/);

  await page.goto(`${base}/console/review?status=waiting&area=01.002.00004`);
  await page.locator(`a[href="/console/households/${id}"]`).click();
  assert.match(await page.innerText('#review-status'), /Waiting for review/);
  await page.click('button:has-text("Approve")');
  await page.waitForURL(/done=/);
  assert.match(await page.innerText('#review-status'), /Approved/);
  const audit = await page.innerText('table:last-of-type');
  assert.match(audit, /operator1\s+server\s+return for correction/);
  assert.match(audit, /operator1\s+server\s+approve/);
  await page.screenshot({ path: join(shots, 'review-approved.png'), fullPage: true });
  await page.goto(`${base}/console/review?status=approved&area=01.002.00004`);
  assert.ok(await page.locator(`a[href="/console/households/${id}"]`).isVisible());
  await context.close();
});

test('transfers: an officer asks to move a household out of the commune; the operator approves one and refuses another', async () => {
  const cli = (store, profile) => (...args) =>
    execFileSync(cliBin, ['--store', join(work, store), '--profile', profile, ...args], {
      env: { ...process.env, DOORSTEP_PIN: '135790' },
      encoding: 'utf8',
    });
  const from = cli('transfer-from.db', 'officer-f');
  const to = cli('transfer-to.db', 'officer-t');
  // An admin enrols one phone for commune 01.002.00004 and one for 01.003.00007.
  const admin = await loggedIn(ADMIN);
  for (const [area, phone, name] of [['01.002.00004', from, 'officer-f'], ['01.003.00007', to, 'officer-t']]) {
    await admin.page.goto(`${base}/console/devices`);
    await admin.page.fill('input[name=area]', area);
    await admin.page.click('button:has-text("Create QR code")');
    const src = await admin.page.locator('.qr img').getAttribute('src');
    const qr = join(work, `transfer-${name}.png`);
    writeFileSync(qr, Buffer.from(src.split(',')[1], 'base64'));
    phone('create-profile', name);
    phone('enrol', qr);
    phone('sync');
  }
  await admin.context.close();
  const [go, stay] = from('list').split('\n').slice(0, 2).map((l) => l.split(/\s+/)[0]);
  assert.match(from('move', go, '--to', '01.003.00007', '--reason', 'Cả hộ chuyển đến xã mới'), /transfer request tr-/);
  assert.match(from('move', stay, '--to', '01.003.00007'), /transfer request tr-/);
  from('sync');
  assert.match(from('transfers'), /pending/);

  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/transfers`);
  const rowGo = page.locator('tr', { has: page.locator(`a[href="/console/households/${go}"]`) });
  const rowStay = page.locator('tr', { has: page.locator(`a[href="/console/households/${stay}"]`) });
  assert.match(await rowGo.innerText(), /01\.002\.00004\s+01\.003\.00007\s+officer-f\s+Cả hộ chuyển đến xã mới/);
  await page.screenshot({ path: join(shots, 'transfers-pending.png'), fullPage: true });
  await rowGo.locator('input[name=note]').fill('Đã xác minh giấy tờ');
  await rowGo.locator('button:has-text("Approve")').click();
  await page.waitForURL(/done=/);
  await rowStay.locator('input[name=note]').fill('Thiếu giấy xác nhận cư trú');
  await rowStay.locator('button:has-text("Refuse")').click();
  await page.waitForURL(/done=/);
  assert.equal(await page.locator('table.transfers').count(), 0, 'nothing waits any more');
  await page.goto(`${base}/console/transfers?status=approved`);
  assert.ok(await page.locator(`a[href="/console/households/${go}"]`).isVisible());
  await page.goto(`${base}/console/households/${go}`);
  assert.match(await page.innerText('body'), /approve transfer 01\.002\.00004 → 01\.003\.00007/);
  await page.screenshot({ path: join(shots, 'transfers-approved.png'), fullPage: true });
  await context.close();

  // The asking phone hears both outcomes and lets the moved household go; the new commune's phone gets it whole.
  const synced = from('sync');
  assert.match(synced, /approved: Đã xác minh giấy tờ/);
  assert.match(synced, /refused: Thiếu giấy xác nhận cư trú/);
  assert.match(synced, /removed from this phone: 1 household/);
  assert.throws(() => from('show', go));
  assert.match(from('show', stay), /"area_code": "01\.002\.00004"/);
  to('sync');
  assert.match(to('show', go), /"area_code": "01\.003\.00007"/);
  assert.throws(() => to('show', stay));
});

test('an operator cannot do what only an admin may', async () => {
  const { context, page } = await loggedIn(OPERATOR);
  await page.goto(`${base}/console/devices`);
  assert.equal(await page.locator('button:has-text("Revoke")').count(), 0);
  assert.equal(await page.locator('button:has-text("Create QR code")').count(), 0);
  const resp = await page.goto(`${base}/console/operators`);
  assert.equal(resp.status(), 403);
  await context.close();
});
