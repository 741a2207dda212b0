// The pages' own files kept on the device, so that a station's tablet can reload its terminal while the
// service is unreachable (its orders wait in IndexedDB meanwhile). Network first, the cached copy when the
// network fails; the API (/v1/…), /docs and /openapi.json are never cached.
const CACHE = 'timebank-pages-v1'

self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()))

self.addEventListener('fetch', (event) => {
  const request = event.request
  const url = new URL(request.url)
  if (request.method !== 'GET' || url.origin !== self.location.origin) return
  if (url.pathname.startsWith('/v1') || url.pathname.startsWith('/docs') || url.pathname === '/openapi.json') return
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE)
      try {
        const response = await fetch(request)
        if (response.ok) await cache.put(request.mode === 'navigate' ? '/index.html' : request, response.clone())
        return response
      } catch (error) {
        const cached = await cache.match(request.mode === 'navigate' ? '/index.html' : request)
        if (cached) return cached
        throw error
      }
    })(),
  )
})
