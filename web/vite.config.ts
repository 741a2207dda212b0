import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import { copyFileSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'

// Swagger UI's assets into the build (dist/docs-assets/), for the service's /docs with no CDN.
const swaggerAssets = {
  name: 'swagger-ui-assets',
  closeBundle() {
    const from = resolve(__dirname, 'node_modules/swagger-ui-dist')
    const to = resolve(__dirname, 'dist/docs-assets')
    mkdirSync(to, { recursive: true })
    for (const f of ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png']) copyFileSync(resolve(from, f), resolve(to, f))
  },
}

// Vant's icon font is in its CSS as a data: URL (woff2); its woff fallback points at a CDN, which a page on
// the city's intranet must never ask: the fallback is dropped, the bundled woff2 is what every browser uses.
const vantIconsOffline = {
  name: 'vant-icons-offline',
  transform(code: string, id: string) {
    if (!id.includes('/vant/') || !id.endsWith('.css')) return null
    return { code: code.replace(/,\s*url\((["']?)\/\/at\.alicdn\.com\/[^)]*\)\s*format\((["'])woff\2\)/g, ''), map: null }
  },
}

// The build is served by the service itself (api/web.py): no Node process at run time, nothing from a CDN.
export default defineConfig({
  plugins: [vue(), swaggerAssets, vantIconsOffline],
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 2000, reportCompressedSize: false },
  server: { proxy: { '/v1': 'http://127.0.0.1:8000' } },
  test: { include: ['src/**/*.test.ts'], testTimeout: 30000 },
})
