//! The two pages: the analytics dashboard (Chart.js 4.6.1, vendored from the npm registry) and
//! the verifier (paste a credential or a QR payload, or scan with the camera using jsQR 1.4.0,
//! vendored likewise). Both are static HTML that call the JSON endpoints; the vendored files are
//! served from `/assets/` with their licences next to them in `query-api/assets/vendor/`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use crate::AppState;

const CHART_JS: &str = include_str!("../assets/vendor/chart-4.6.1.umd.min.js");
const JSQR: &str = include_str!("../assets/vendor/jsqr-1.4.0.js");

/// `GET /assets/{name}`: the vendored scripts, immutable (their names carry their versions).
pub async fn asset(Path(name): Path<String>) -> Response {
    let body = match name.as_str() {
        "chart-4.6.1.umd.min.js" => CHART_JS,
        "jsqr-1.4.0.js" => JSQR,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// `GET /dashboard`.
pub async fn page() -> Html<&'static str> {
    Html(DASHBOARD)
}

/// `GET /verify`: the verifier page, with the configured guidance on whom to contact.
pub async fn verifier_page(State(state): State<Arc<AppState>>) -> Html<String> {
    let help = state
        .verifier_help
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Html(VERIFIER.replace("{{HELP}}", &help))
}

const DASHBOARD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vaxtrail dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #f7f7f9; color: #222; }
 h1 { font-size: 1.4rem; margin: 0 0 .3rem; } .sub { color: #666; margin-bottom: 1rem; }
 .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem; }
 .card { background: #fff; border-radius: 8px; padding: 1rem; box-shadow: 0 1px 3px #0002; }
 .card h2 { font-size: 1rem; margin: 0 0 .5rem; } canvas { max-height: 260px; }
 #totals { font-size: 1.1rem; } .error { color: #a00; } form { margin-bottom: 1rem; }
</style></head>
<body data-rendered="false">
<h1>Vaccinations and certificates</h1>
<div class="sub">From the analytics projection (ClickHouse); refreshed every 10 s.</div>
<form id="filters">From <input type="date" name="from"> to <input type="date" name="to">
 programme <input name="programme" placeholder="all"> <button>Apply</button></form>
<div id="totals" class="card"></div>
<div class="grid">
 <div class="card"><h2>Doses per day</h2><canvas id="day"></canvas></div>
 <div class="card"><h2>By vaccine</h2><canvas id="vaccine"></canvas></div>
 <div class="card"><h2>By dose number</h2><canvas id="dose"></canvas></div>
 <div class="card"><h2>By state</h2><canvas id="state"></canvas></div>
 <div class="card"><h2>By gender</h2><canvas id="gender"></canvas></div>
 <div class="card"><h2>By age band</h2><canvas id="ageBand"></canvas></div>
 <div class="card"><h2>By facility</h2><canvas id="facility"></canvas></div>
 <div class="card"><h2>Certificates</h2><canvas id="outcomes"></canvas></div>
 <div class="card"><h2>Pipeline lag (records behind)</h2><canvas id="lag"></canvas></div>
</div>
<script src="/assets/chart-4.6.1.umd.min.js"></script>
<script>
const charts = {};
const colours = ['#2563eb','#16a34a','#f59e0b','#dc2626','#7c3aed','#0891b2','#db2777','#65a30d'];
function draw(id, type, labels, values, label) {
  const data = { labels, datasets: [{ label, data: values, backgroundColor: type === 'line' ? '#2563eb33' : colours,
    borderColor: '#2563eb', fill: type === 'line' }] };
  if (charts[id]) { charts[id].data = data; charts[id].update('none'); return; }
  charts[id] = new Chart(document.getElementById(id), { type, data,
    options: { animation: false, responsive: true, plugins: { legend: { display: type === 'doughnut' } } } });
}
function query() {
  const f = new FormData(document.getElementById('filters')); const p = new URLSearchParams();
  for (const [k, v] of f) if (v) p.set(k, v); return p;
}
async function json(url) { const r = await fetch(url); if (!r.ok) throw new Error(url + ': ' + r.status); return r.json(); }
async function refresh() {
  try {
    const dims = [['day','line'],['vaccine','bar'],['dose','bar'],['state','bar'],['gender','doughnut'],['ageBand','bar'],['facility','bar']];
    let total = 0;
    for (const [by, type] of dims) {
      const p = query(); p.set('by', by);
      const d = await json('/v1/analytics/doses?' + p);
      total = d.total;
      draw(by, type, d.series.map(s => s.key), d.series.map(s => s.doses), 'doses');
    }
    const p = query(); p.delete('programme');
    const c = await json('/v1/analytics/certificates?' + p);
    draw('outcomes', 'bar', c.series.map(s => s.key), c.series.map(s => s.certificates), 'certificates');
    const l = await json('/v1/analytics/signing-latency?' + p);
    const lag = await json('/v1/pipeline/lag');
    const names = Object.keys(lag.behind);
    draw('lag', 'bar', names, names.map(n => Object.values(lag.behind[n]).reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0)), 'records behind');
    document.getElementById('totals').textContent =
      `${total} doses · ${l.certificates} certificates issued · signing latency p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms`;
    document.body.dataset.rendered = 'true';
  } catch (e) {
    document.getElementById('totals').innerHTML = '<span class="error"></span>';
    document.querySelector('#totals .error').textContent = 'Could not load: ' + e.message;
  }
}
document.getElementById('filters').addEventListener('submit', e => { e.preventDefault(); refresh(); });
refresh(); setInterval(refresh, 10000);
</script></body></html>
"#;

const VERIFIER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verify a vaccination certificate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 44rem; padding: 0 1rem; color: #222; }
 textarea { width: 100%; height: 9rem; } video { width: 100%; max-height: 20rem; background: #000; display: none; }
 #answer { margin-top: 1rem; padding: 1rem; border-radius: 8px; display: none; }
 .valid { background: #dcfce7; } .invalid, .revoked { background: #fee2e2; } .superseded { background: #fef9c3; }
 .help { color: #555; margin-top: .5rem; }
</style></head>
<body>
<h1>Verify a vaccination certificate</h1>
<p>Scan the QR code on the certificate with your camera, or paste the certificate (JSON) or the QR
code's content (base64).</p>
<button id="scan">Scan with the camera</button>
<video id="video" playsinline></video><canvas id="frame" hidden></canvas>
<p><textarea id="input" placeholder="Paste the certificate JSON, the QR payload in base64, or an EU DCC (HC1:…) or SMART Health Card (shc:/…) text"></textarea></p>
<button id="check">Verify</button>
<div id="answer"></div>
<script src="/assets/jsqr-1.4.0.js"></script>
<script>
const HELP = "{{HELP}}";
const words = {
  valid: 'Valid: this certificate was issued by the programme and has not been changed.',
  invalid: 'Not valid: this is not a certificate the programme issued, or it was changed after it was issued.',
  revoked: 'Revoked: the programme withdrew this certificate.',
  superseded: 'Replaced: a corrected certificate was issued for this dose; ask for the newer one.',
};
function show(answer) {
  const box = document.getElementById('answer');
  box.className = answer.outcome; box.style.display = 'block'; box.textContent = '';
  const h = document.createElement('h2'); h.textContent = words[answer.outcome] || answer.outcome; box.append(h);
  for (const r of answer.reasons || []) { const p = document.createElement('p'); p.textContent = r; box.append(p); }
  if (answer.certificateId) { const p = document.createElement('p'); p.textContent = 'Certificate ' + answer.certificateId; box.append(p); }
  if (answer.outcome !== 'valid') { const p = document.createElement('p'); p.className = 'help'; p.textContent = HELP; box.append(p); }
}
async function verify(body) {
  const r = await fetch('/v1/verify', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await r.json();
  if (r.status === 503) { show({ outcome: 'unavailable', reasons: ['The verification service cannot check revocation right now. This does not mean the certificate is invalid: try again in a minute.'] }); return; }
  if (!r.ok) { show({ outcome: 'invalid', reasons: (answer.errors || []).map(e => `${e.field}: ${e.rule}`).concat([answer.title]) }); return; }
  show(answer);
}
document.getElementById('check').onclick = () => {
  const text = document.getElementById('input').value.trim();
  if (text.startsWith('{')) { try { verify(JSON.parse(text)); } catch (e) { show({ outcome: 'invalid', reasons: ['Not JSON: ' + e.message] }); } }
  else verify({ qr: text });
};
document.getElementById('scan').onclick = async () => {
  if (!navigator.mediaDevices) { show({ outcome: 'invalid', reasons: ['The camera needs this page served over HTTPS.'] }); return; }
  const video = document.getElementById('video'); const canvas = document.getElementById('frame');
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  video.srcObject = stream; video.style.display = 'block'; await video.play();
  const tick = () => {
    if (video.readyState === video.HAVE_ENOUGH_DATA) {
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      const ctx = canvas.getContext('2d'); ctx.drawImage(video, 0, 0);
      const code = jsQR(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
      if (code) {
        stream.getTracks().forEach(t => t.stop()); video.style.display = 'none';
        // An EU DCC (HC1:) or a SMART Health Card (shc:/) is text; DIVOC's payload is a ZIP.
        if (/^(HC1:|shc:\/)/.test(code.data)) { verify({ qr: code.data }); return; }
        let binary = ''; for (const b of code.binaryData) binary += String.fromCharCode(b);
        verify({ qr: btoa(binary) }); return;
      }
    }
    requestAnimationFrame(tick);
  };
  tick();
};
</script></body></html>
"#;
