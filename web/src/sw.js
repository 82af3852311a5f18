// The site's service worker: keeps what the page fetched from its own origin, so that the page works offline
// once loaded, and serves every response with the headers of cross-origin isolation (COOP + COEP), which let
// onnxruntime-web run on several threads on any static host.
const SHELL = 'zoo-shell-BUILD';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith('zoo-shell-') && name !== SHELL) await caches.delete(name);
    await self.clients.claim();
  })());
});

function isolated(response) {
  if (response.status === 0) return response; // opaque: not ours to change
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cached = await caches.match(request, { ignoreSearch: true });
    if (cached) return isolated(cached);
    const response = await fetch(request);
    // Models are kept by the page itself (zoo.js), each once; everything else of the site here.
    if (response.ok && !new URL(request.url).pathname.includes('/models/')) {
      const cache = await caches.open(SHELL);
      await cache.put(request, response.clone());
    }
    return isolated(response);
  })());
});
