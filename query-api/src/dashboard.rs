//! The analytics dashboard (Chart.js 4.6.1, vendored from the npm registry), static HTML that
//! calls the JSON endpoints, and the vendored scripts the pages load (Chart.js; jsQR 1.4.0 and
//! jsonld.js 9.0.0 for the verifier page, `verifier`), served from `/assets/` with their licences
//! next to them in `query-api/assets/vendor/`.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

const CHART_JS: &str = include_str!("../assets/vendor/chart-4.6.1.umd.min.js");
const JSQR: &str = include_str!("../assets/vendor/jsqr-1.4.0.js");
const JSONLD: &str = include_str!("../assets/vendor/jsonld-9.0.0.min.js");

/// `GET /assets/{name}`: the vendored scripts, immutable (their names carry their versions).
pub async fn asset(Path(name): Path<String>) -> Response {
    let body = match name.as_str() {
        "chart-4.6.1.umd.min.js" => CHART_JS,
        "jsqr-1.4.0.js" => JSQR,
        "jsonld-9.0.0.min.js" => JSONLD,
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
