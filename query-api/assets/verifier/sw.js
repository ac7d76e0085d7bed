// vaxtrail's verifier service worker (scope /verify): keeps the verifier page, its scripts, the
// trust bundle (the issuer's DID document, the contexts, the guidance, the list index) and the
// status lists, so the page verifies without a network after its first load. Every request is
// tried on the network first (5 s) and the cached copy is used when the network fails or the
// server is unavailable; what comes from the network is stamped with X-Vaxtrail-Fetched, so the
// page can say how old its lists are.
const CACHE = 'vaxtrail-verifier-{{VERSION}}';
const SHELL = ['/verify', '/verify/app.js', '/verify/trust.json', '/assets/jsqr-1.4.0.js', '/assets/jsonld-9.0.0.min.js'];
const LISTS = '/v1/status-lists/';

self.addEventListener('install', event => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    for (const path of SHELL) {
      const response = await fetch(path, { cache: 'no-store' });
      if (response.ok) await cache.put(path, await stamp(response));
    }
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', event => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith('vaxtrail-verifier-') && name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', event => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname) && !url.pathname.startsWith(LISTS)) return;
  event.respondWith(networkFirst(event.request, url));
});

async function stamp(response) {
  const headers = new Headers(response.headers);
  headers.set('X-Vaxtrail-Fetched', new Date().toISOString());
  return new Response(await response.blob(), { status: response.status, statusText: response.statusText, headers });
}

async function networkFirst(request, url) {
  const cache = await caches.open(CACHE);
  // The page is cached without its query (?lang=…).
  const key = url.pathname;
  let response = null;
  try {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 5000);
    // By URL: a navigation's own Request cannot be fetched with options.
    response = await fetch(request.url, { signal: controller.signal, cache: 'no-store' });
    clearTimeout(timer);
  } catch (e) {
    response = null;
  }
  if (response && response.ok) {
    const stamped = await stamp(response);
    await cache.put(key, stamped.clone());
    return stamped;
  }
  if (response && response.status < 500) return response; // a 404 is an answer, not an outage
  const cached = await cache.match(key);
  if (cached) return cached;
  return response || new Response('offline and not cached', { status: 503, headers: { 'Retry-After': '10' } });
}
