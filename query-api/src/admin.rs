//! The master-data page (`GET /admin`): programmes, vaccines and facilities, viewed and edited
//! through the command API's master-data endpoints with the administrator's (or controller's)
//! own bearer token, pasted into the page and kept in the tab's session storage only. The query
//! API holds no write path and no token: the page is static HTML that calls the command API at
//! `VAXTRAIL_COMMAND_API_PUBLIC_URL`, which must list this page's origin in
//! `VAXTRAIL_ADMIN_ORIGINS` (CORS). Same look as the dashboard.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};

use crate::AppState;

/// `GET /admin`.
pub async fn page(State(state): State<Arc<AppState>>) -> Response {
    // The URL is configuration, written into a JSON string literal and the CSP.
    let url = state.command_api_url.trim_end_matches('/');
    let literal = serde_json::to_string(url).expect("a string serializes");
    let mut response = Html(ADMIN.replace("\"{{COMMAND_API}}\"", &literal)).into_response();
    let csp = format!(
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' {url}; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

const ADMIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vaxtrail master data</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #f7f7f9; color: #222; }
 h1 { font-size: 1.4rem; margin: 0 0 .3rem; } .sub { color: #666; margin-bottom: 1rem; }
 .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem; }
 .card { background: #fff; border-radius: 8px; padding: 1rem; box-shadow: 0 1px 3px #0002; overflow-x: auto; }
 .card h2 { font-size: 1rem; margin: 0 0 .5rem; }
 table { border-collapse: collapse; width: 100%; font-size: .9rem; margin-bottom: .8rem; }
 td, th { border-bottom: 1px solid #eee; padding: .25rem .4rem; text-align: left; }
 form { display: grid; grid-template-columns: 9rem 1fr; gap: .3rem .5rem; align-items: center; }
 form button { grid-column: 2; justify-self: start; } input, select { font: inherit; }
 #message { min-height: 1.4rem; margin: .5rem 0; } .error { color: #a00; } .ok { color: #166534; }
 .active { color: #166534; } .suspended { color: #a16207; }
</style></head>
<body data-loaded="false">
<h1>Master data</h1>
<div class="sub">Programmes, vaccines and facilities, as every service sees them. Changes apply
without a restart. Your token stays in this tab.</div>
<form id="login" class="card"><label for="token">Bearer token</label>
 <input id="token" type="password" autocomplete="off" placeholder="administrator or controller token">
 <button>Use this token</button></form>
<div id="message" role="status"></div>
<div class="grid">
 <div class="card"><h2>Programmes</h2>
  <table id="programmes"><thead><tr><th>id</th><th>name</th><th>doses</th><th>update limit</th><th>time zone</th><th>country</th></tr></thead><tbody></tbody></table>
  <form id="programme">
   <label>programId</label><input name="id" required pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,63}">
   <label>Name</label><input name="name" required>
   <label>Diseases</label><input name="diseases" placeholder="comma-separated">
   <label>Total doses</label><input name="totalDoses" type="number" min="1" max="10" value="2" required>
   <label>Update limit</label><input name="updateLimit" type="number" min="0" max="100" value="1" required>
   <label>Time zone</label><input name="timeZone" value="UTC" required>
   <label>Country</label><input name="country" value="IND" required>
   <label>Languages</label><input name="languages" placeholder="hi, ta">
   <button>Save programme</button></form></div>
 <div class="card"><h2>Facilities</h2>
  <table id="facilities"><thead><tr><th>id</th><th>name</th><th>district</th><th>status</th><th></th></tr></thead><tbody></tbody></table>
  <form id="facility">
   <label>Facility id</label><input name="id" required pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,63}">
   <label>Name</label><input name="name" required>
   <label>District</label><input name="district" required>
   <label>State</label><input name="state" required>
   <button>Register facility</button></form></div>
 <div class="card"><h2>Vaccines</h2>
  <table id="vaccines"><thead><tr><th>name</th><th>manufacturer</th><th>ICD-11</th><th>disease</th></tr></thead><tbody></tbody></table>
  <form id="vaccine">
   <label>Name</label><input name="name" required>
   <label>Manufacturer</label><input name="manufacturer">
   <label>ICD-11 code</label><input name="icd11Code" required>
   <label>ICD-11 term</label><input name="icd11Term" required>
   <label>Type</label><input name="vaccineType" required>
   <label>Disease</label><input name="disease" required>
   <button>Save vaccine</button></form></div>
</div>
<script>
const API = "{{COMMAND_API}}";
const token = () => sessionStorage.getItem('vaxtrail-token') || '';
function say(text, ok) {
  const m = document.getElementById('message');
  m.textContent = text; m.className = ok ? 'ok' : 'error';
}
async function call(method, path, body) {
  const r = await fetch(API + path, { method, headers: Object.assign({ 'Authorization': 'Bearer ' + token() },
    body ? { 'Content-Type': 'application/json' } : {}), body: body ? JSON.stringify(body) : undefined });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const problems = (data.errors || []).map(e => e.field + ': ' + e.rule).join('; ');
    throw new Error((data.title || r.status) + (problems ? ' (' + problems + ')' : ''));
  }
  return data;
}
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text ?? ''; if (cls) td.className = cls; return td; }
function rows(id, items, fill) {
  const body = document.querySelector('#' + id + ' tbody'); body.replaceChildren();
  for (const item of items) fill(body.insertRow(), item);
}
async function load() {
  try {
    const d = await call('GET', '/v1/master-data');
    rows('programmes', d.programmes, (r, p) => { for (const k of ['id','name','totalDoses','updateLimit','timeZone','country']) cell(r, p[k]); });
    rows('vaccines', d.vaccines, (r, v) => { for (const k of ['name','manufacturer','icd11Code','disease']) cell(r, v[k]); });
    rows('facilities', d.facilities, (r, f) => {
      for (const k of ['id','name','district']) cell(r, f[k]);
      cell(r, f.status, f.status);
      const next = f.status === 'active' ? 'suspended' : 'active';
      const b = document.createElement('button');
      b.textContent = next === 'active' ? 'Activate' : 'Suspend';
      b.dataset.facility = f.id;
      b.addEventListener('click', () => act(() => call('POST', '/v1/master-data/facilities/' + encodeURIComponent(f.id) + '/status', { status: next }), 'Facility ' + f.id + ' is now ' + next));
      cell(r, '').appendChild(b);
    });
    document.body.dataset.loaded = 'true';
  } catch (e) { say('Could not load master data: ' + e.message); }
}
async function act(work, done) {
  try { await work(); say(done, true); await load(); } catch (e) { say(e.message); }
}
const list = s => s.split(',').map(x => x.trim()).filter(Boolean);
function submit(id, handler) {
  document.getElementById(id).addEventListener('submit', e => { e.preventDefault(); handler(Object.fromEntries(new FormData(e.target))); });
}
submit('login', () => { sessionStorage.setItem('vaxtrail-token', document.getElementById('token').value.trim()); load(); });
submit('programme', f => act(() => call('PUT', '/v1/master-data/programmes/' + encodeURIComponent(f.id), {
  name: f.name, diseases: list(f.diseases), totalDoses: Number(f.totalDoses), updateLimit: Number(f.updateLimit),
  timeZone: f.timeZone, country: f.country, languages: list(f.languages) }), 'Programme ' + f.id + ' saved'));
submit('facility', f => act(() => call('PUT', '/v1/master-data/facilities/' + encodeURIComponent(f.id), {
  name: f.name, district: f.district, state: f.state }), 'Facility ' + f.id + ' registered (suspended until activated)'));
submit('vaccine', f => act(() => call('POST', '/v1/master-data/vaccines', {
  name: f.name, manufacturer: f.manufacturer || null, icd11Code: f.icd11Code, icd11Term: f.icd11Term,
  vaccineType: f.vaccineType, disease: f.disease }), 'Vaccine ' + f.name + ' saved'));
if (token()) load();
</script></body></html>
"#;
