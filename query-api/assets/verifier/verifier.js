// vaxtrail's verifier page: checks a certificate in the browser, with or without a network.
//
// A W3C credential (DIVOC's QR: a ZIP holding certificate.json, or pasted JSON) is verified here:
// its eddsa-rdfc-2022 proof by RDF canonicalization (jsonld.js, vendored, with every context from
// /verify/trust.json, so nothing is fetched for it) and Ed25519 (WebCrypto), against the issuer's
// DID document; its revocation bit read from the status list it names, itself signature-checked.
// The service worker (/verify-sw.js) keeps the page, the trust bundle and the lists for offline
// use; the page shows how old its lists are and never calls a certificate invalid because a
// list could not be refreshed. EU DCC and SMART Health Card texts are checked by the server.
'use strict';

const MAX_CERTIFICATE = 64 * 1024; // what the server reads out of a QR payload, too
const MAX_LIST = 1 << 20 >> 3; // a Bitstring Status List's bytes (2^20 bits)
const PREFETCH_LISTS = 200; // the newest lists fetched for offline use at each load

let trust = null; // { did, listBase, lists, contexts, guidance, defaultLanguage } (GET /verify/trust.json)
let lang = 'en';
const verifiedLists = new Map(); // path -> { bits, fetched, issued, purpose }

// ---------------------------------------------------------------- bytes

function b64ToBytes(text) {
  const s = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function base58Decode(text) {
  if (text.length > 256) throw new Error('base58 value too long');
  const digits = []; // little-endian base 256
  for (const c of text) {
    let carry = B58.indexOf(c);
    if (carry < 0) throw new Error('not base58: ' + c);
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i] * 58;
      digits[i] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) { digits.push(carry & 0xff); carry >>= 8; }
  }
  let zeros = 0;
  while (zeros < text.length && text[zeros] === '1') zeros++;
  return Uint8Array.from([...new Array(zeros).fill(0), ...digits.reverse()]);
}

async function inflate(bytes, format, limit) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
  const reader = stream.getReader();
  const parts = []; let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) { await reader.cancel(); throw new Error(`more than ${limit} bytes once decompressed`); }
    parts.push(value);
  }
  const out = new Uint8Array(size); let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// DIVOC's QR payload: a ZIP archive; certificate.json found through the central directory.
async function certificateOfZip(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) { end = i; break; }
  }
  if (end < 0) throw new Error(t('notZip'));
  const entries = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  for (let n = 0; n < entries; n++) {
    if (at + 46 > bytes.length || view.getUint32(at, true) !== 0x02014b50) break;
    const method = view.getUint16(at + 10, true);
    const compressed = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true);
    const skip = nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    at += 46 + skip;
    if (name !== 'certificate.json') continue;
    if (local + 30 > bytes.length || view.getUint32(local, true) !== 0x04034b50) break;
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const data = bytes.subarray(start, start + compressed);
    let text;
    if (method === 8) text = await inflate(data, 'deflate-raw', MAX_CERTIFICATE);
    else if (method === 0 && data.length <= MAX_CERTIFICATE) text = data;
    else throw new Error('certificate.json is stored in a way this page does not read');
    return new TextDecoder('utf-8', { fatal: true }).decode(text);
  }
  throw new Error(t('notZip') + ' (certificate.json)');
}

// ---------------------------------------------------------------- proofs

function documentLoader(url) {
  const document = trust.contexts[url];
  if (!document) return Promise.reject(new Error('a context this issuer does not use: ' + url));
  return Promise.resolve({ contextUrl: null, documentUrl: url, document });
}

function canonize(input) {
  return jsonld.canonize(input, { algorithm: 'RDFC-1.0', format: 'application/n-quads', documentLoader, safe: true });
}

async function sha256(text) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

const issuerOf = doc => (typeof doc.issuer === 'string' ? doc.issuer : doc.issuer && doc.issuer.id);

// A reason, in the page's language, with what the page found (not translated) after it.
function problem(key, detail) {
  return t(key) + (detail ? ' (' + detail + ')' : '');
}

// The reason a credential's proof fails, or null when it holds (eddsa-rdfc-2022, Data Integrity).
async function proofProblem(doc) {
  const proof = doc.proof;
  if (!proof || Array.isArray(proof) || proof.type !== 'DataIntegrityProof' || proof.cryptosuite !== 'eddsa-rdfc-2022')
    return problem('noProof');
  if (proof.proofPurpose !== 'assertionMethod') return problem('noProof', 'proofPurpose');
  if (issuerOf(doc) !== trust.did.id) return problem('otherIssuer', String(issuerOf(doc)));
  const method = (trust.did.verificationMethod || []).find(m => m.id === proof.verificationMethod);
  const asserts = (trust.did.assertionMethod || []).some(m => m === proof.verificationMethod || m.id === proof.verificationMethod);
  if (!method || !asserts || method.controller !== trust.did.id) return problem('unknownKey', String(proof.verificationMethod));
  const multikey = base58Decode(String(method.publicKeyMultibase).slice(1));
  if (multikey.length !== 34 || multikey[0] !== 0xed || multikey[1] !== 0x01) return problem('unknownKey', 'not an Ed25519 multikey');
  if (typeof proof.proofValue !== 'string' || !proof.proofValue.startsWith('z')) return problem('signatureMismatch', 'proofValue is not base58btc');
  const signature = base58Decode(proof.proofValue.slice(1));
  if (signature.length !== 64) return problem('signatureMismatch', 'proofValue is not 64 bytes');
  const { proofValue, ...options } = proof;
  options['@context'] = doc['@context'];
  const { proof: _, ...unsecured } = doc;
  let data;
  try {
    const [a, b] = await Promise.all([canonize(options), canonize(unsecured)]);
    const [ha, hb] = await Promise.all([sha256(a), sha256(b)]);
    data = new Uint8Array(64); data.set(ha, 0); data.set(hb, 32);
  } catch (e) {
    return problem('malformed', e.message);
  }
  const key = await crypto.subtle.importKey('raw', multikey.slice(2), { name: 'Ed25519' }, false, ['verify']);
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, data);
  return ok ? null : problem('signatureMismatch');
}

// ---------------------------------------------------------------- status lists

const LIST_PATH = '/v1/status-lists/';

// The list at `url` (a path on this origin), checked (its signature, issuer, type), through the service worker's cache.
async function statusList(url) {
  if (verifiedLists.has(url)) return verifiedLists.get(url);
  const response = await fetch(url);
  if (!response.ok) throw new Error('status list ' + url + ': ' + response.status);
  const fetched = response.headers.get('X-Vaxtrail-Fetched') || new Date().toISOString();
  const list = await response.json();
  const wrong = await proofProblem(list);
  if (wrong) throw new Error('status list ' + url + ': ' + wrong);
  const subject = list.credentialSubject || {};
  const bitstring = [].concat(list.type).includes('BitstringStatusListCredential');
  let encoded = String(subject.encodedList || '');
  if (bitstring) {
    if (!encoded.startsWith('u')) throw new Error('the status list is not multibase base64url');
    encoded = encoded.slice(1);
  }
  const bits = await inflate(b64ToBytes(encoded), 'gzip', MAX_LIST);
  const entry = { bits, fetched, issued: list.validFrom || list.issuanceDate, purpose: subject.statusPurpose };
  verifiedLists.set(url, entry);
  return entry;
}

// { revoked, fetched, issued } for each revocation entry, or { unchecked: reason }.
async function revocation(doc) {
  const entries = [].concat(doc.credentialStatus || []);
  let seen = null;
  for (const e of entries) {
    if (!['BitstringStatusListEntry', 'StatusList2021Entry'].includes(e.type) || e.statusPurpose !== 'revocation') continue;
    // The issuer's lists are fetched from the deployment that served this page.
    const url = String(e.statusListCredential);
    const number = url.startsWith(trust.listBase) ? url.slice(trust.listBase.length) : '';
    if (!/^[0-9]{1,10}$/.test(number)) return { unchecked: t('listElsewhere') };
    const index = Number(e.statusListIndex);
    if (!Number.isInteger(index) || index < 0) return { unchecked: t('listElsewhere') };
    let list;
    try { list = await statusList(LIST_PATH + number); } catch (err) { return { unchecked: t('listMissing'), detail: err.message }; }
    if (index >= list.bits.length * 8) return { unchecked: t('listMissing') };
    if (list.purpose !== 'revocation') return { unchecked: t('listElsewhere') };
    const revoked = ((list.bits[index >> 3] >> (7 - (index & 7))) & 1) === 1;
    seen = { revoked, fetched: list.fetched, issued: list.issued };
    if (revoked) return seen;
  }
  return seen || { unchecked: t('noStatus') };
}

// ---------------------------------------------------------------- checking

// { outcome, reasons, certificateId?, lists? }
async function check(text) {
  let doc;
  try { doc = JSON.parse(text); } catch (e) { return { outcome: 'invalid', reasons: [t('notJson') + ' ' + e.message] }; }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { outcome: 'invalid', reasons: [t('notJson')] };
  const wrong = await proofProblem(doc);
  const subject = doc.credentialSubject || {};
  const certificateId = (doc.evidence && [].concat(doc.evidence)[0] && [].concat(doc.evidence)[0].certificateId) || doc.id;
  if (wrong) return { outcome: 'invalid', reasons: [wrong] };
  const status = await revocation(doc);
  const name = subject.name || '';
  if (status.unchecked) return { outcome: 'unchecked', reasons: [status.unchecked], name, certificateId };
  return { outcome: status.revoked ? 'revoked' : 'valid', reasons: [], name, certificateId, lists: status };
}

// EU DCC and SMART Health Card texts: the server checks them (their keys and lists are not in
// this page's bundle).
async function checkOnServer(qr) {
  let r;
  try {
    r = await fetch('/v1/verify', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ qr }) });
  } catch (e) {
    return { outcome: 'unchecked', reasons: [t('needsNetwork')] };
  }
  const answer = await r.json().catch(() => ({}));
  if (r.status === 503) return { outcome: 'unchecked', reasons: [t('serverBusy')] };
  if (!r.ok) return { outcome: 'invalid', reasons: (answer.errors || []).map(e => `${e.field}: ${e.rule}`).concat([answer.title || String(r.status)]) };
  return answer;
}

async function checkScanned(code) {
  if (/^(HC1:|shc:\/)/.test(code.data)) return checkOnServer(code.data);
  try {
    return await check(await certificateOfZip(Uint8Array.from(code.binaryData)));
  } catch (e) {
    return { outcome: 'invalid', reasons: [e.message] };
  }
}

async function checkPasted(text) {
  if (text.startsWith('{')) return check(text);
  if (/^(HC1:|shc:\/)/.test(text)) return checkOnServer(text);
  try { return await check(await certificateOfZip(b64ToBytes(text.replace(/\s+/g, '')))); }
  catch (e) { return { outcome: 'invalid', reasons: [e.message] }; }
}

// ---------------------------------------------------------------- words

function t(key) {
  const words = (trust && (trust.guidance[lang] || trust.guidance[trust.defaultLanguage])) || {};
  return (words.labels && words.labels[key]) || key;
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  const words = (trust.guidance[lang] || {}).labels || {};
  if (seconds < 120) return words.justNow || 'just now';
  if (seconds < 7200) return (words.minutesAgo || '{n} minutes ago').replace('{n}', Math.round(seconds / 60));
  if (seconds < 172800) return (words.hoursAgo || '{n} hours ago').replace('{n}', Math.round(seconds / 3600));
  return (words.daysAgo || '{n} days ago').replace('{n}', Math.round(seconds / 86400));
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function show(answer) {
  const box = document.getElementById('answer');
  const words = trust.guidance[lang] || trust.guidance[trust.defaultLanguage];
  const result = words.results[answer.outcome] || { title: answer.outcome, meaning: '', whatToDo: '' };
  box.className = answer.outcome; box.dataset.outcome = answer.outcome; box.style.display = 'block'; box.textContent = '';
  box.append(el('h2', result.title));
  if (answer.name) box.append(el('p', answer.name, 'name'));
  if (answer.certificateId) box.append(el('p', t('certificate') + ' ' + answer.certificateId));
  for (const r of answer.reasons || []) box.append(el('p', r, 'reason'));
  if (answer.lists) {
    const age = el('p', t('listsAge').replace('{ago}', ago(answer.lists.fetched)).replace('{time}', new Date(answer.lists.fetched).toLocaleString(lang)), 'age');
    box.append(age);
  }
  box.append(el('p', result.meaning, 'meaning'));
  if (result.whatToDo) box.append(el('p', result.whatToDo, 'todo'));
  if (answer.outcome !== 'valid') box.append(el('p', words.contact, 'help'));
}

function render() {
  const words = trust.guidance[lang] || trust.guidance[trust.defaultLanguage];
  document.documentElement.lang = lang;
  document.documentElement.dir = words.direction || 'ltr';
  for (const node of document.querySelectorAll('[data-word]')) node.textContent = words.labels[node.dataset.word] || node.dataset.word;
  document.getElementById('title').textContent = words.title;
  document.getElementById('how').textContent = words.howToScan;
  document.getElementById('input').placeholder = words.labels.paste;
  const results = document.getElementById('results'); results.textContent = '';
  for (const key of ['valid', 'revoked', 'invalid', 'unchecked']) {
    const r = words.results[key];
    const item = el('li'); item.append(el('strong', r.title + ': ')); item.append(r.meaning + ' ' + (r.whatToDo || ''));
    results.append(item);
  }
  document.getElementById('contact').textContent = words.contact;
}

// ---------------------------------------------------------------- start

async function refreshLists() {
  // The newest lists, fetched through the service worker so it keeps them for offline use.
  const lists = trust.lists.slice(-PREFETCH_LISTS).map(n => LIST_PATH + n);
  let newest = null;
  for (const url of lists) {
    try {
      const list = await statusList(url);
      if (!newest || list.fetched > newest) newest = list.fetched;
    } catch (e) { /* a list that cannot be had now is reported when a certificate needs it */ }
  }
  const state = document.getElementById('state');
  state.textContent = newest ? t('listsAge').replace('{ago}', ago(newest)).replace('{time}', new Date(newest).toLocaleString(lang)) : t('noLists');
}

async function start() {
  if ('serviceWorker' in navigator) {
    try { await navigator.serviceWorker.register('/verify-sw.js', { scope: '/verify' }); } catch (e) { /* served without a worker: online only */ }
  }
  const response = await fetch('/verify/trust.json');
  trust = await response.json();
  const wanted = new URLSearchParams(location.search).get('lang') || localStorage.getItem('vaxtrail-lang');
  const offered = Object.keys(trust.guidance);
  lang = [wanted, ...navigator.languages.map(l => l.split('-')[0])].find(l => l && offered.includes(l)) || trust.defaultLanguage;
  const picker = document.getElementById('lang');
  for (const code of offered) { const o = el('option', trust.guidance[code].name); o.value = code; picker.append(o); }
  picker.value = lang;
  picker.onchange = () => { lang = picker.value; localStorage.setItem('vaxtrail-lang', lang); render(); };
  render();
  if ('serviceWorker' in navigator && navigator.serviceWorker.controller === null) {
    // First load: the worker takes the page over once active (clients.claim), so the lists below
    // are fetched through it and kept.
    await Promise.race([
      new Promise(resolve => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true })),
      new Promise(resolve => setTimeout(resolve, 10000)),
    ]);
  }
  await refreshLists();
  // "true": the service worker controls the page, so it keeps working offline.
  document.body.dataset.ready = String(Boolean(navigator.serviceWorker && navigator.serviceWorker.controller));
}

document.getElementById('check').onclick = async () => {
  show({ outcome: 'checking', reasons: [] });
  show(await checkPasted(document.getElementById('input').value.trim()));
};

document.getElementById('scan').onclick = async () => {
  if (!navigator.mediaDevices) { show({ outcome: 'invalid', reasons: [t('needsHttps')] }); return; }
  const video = document.getElementById('video'); const canvas = document.getElementById('frame');
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } }); }
  catch (e) { show({ outcome: 'unchecked', reasons: [t('noCamera') + ' ' + e.message] }); return; }
  video.srcObject = stream; video.style.display = 'block'; await video.play();
  const tick = async () => {
    if (video.readyState === video.HAVE_ENOUGH_DATA) {
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      const ctx = canvas.getContext('2d', { willReadFrequently: true }); ctx.drawImage(video, 0, 0);
      const code = jsQR(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
      if (code) {
        stream.getTracks().forEach(track => track.stop()); video.style.display = 'none';
        show({ outcome: 'checking', reasons: [] });
        show(await checkScanned(code));
        return;
      }
    }
    requestAnimationFrame(tick);
  };
  tick();
};

start().catch(e => {
  document.getElementById('state').textContent = 'The verifier could not start: ' + e.message;
  document.body.dataset.ready = 'false';
});
