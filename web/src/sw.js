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
    // Models are kept by the page itself (zoo.js), each once; everything else of the site here. Keeping is a
    // bonus: a browser short of disk refuses the write (Chromium on a 300 GB disk did with 3.4 GB free), and the page
    // still gets its file, it only will not work offline.
    if (response.ok && !new URL(request.url).pathname.includes('/models/')) {
      const copy = response.clone();
      event.waitUntil(caches.open(SHELL).then((cache) => cache.put(request, copy))
        .catch((error) => console.warn(`${request.url} is not kept for offline use: ${error}`)));
    }
    return isolated(response);
  })());
});
