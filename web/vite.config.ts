import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The build is served by the service itself (api/web.py): no Node process at run time, nothing from a CDN.
export default defineConfig({
  plugins: [vue()],
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 2000, reportCompressedSize: false },
  server: { proxy: { '/v1': 'http://127.0.0.1:8000' } },
  test: { include: ['src/**/*.test.ts'], testTimeout: 30000 },
})
