import { createRouter, createWebHistory } from 'vue-router'

// One route file per page (src/pages/); the service answers index.html for each of these paths.
export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/', component: () => import('./pages/index.vue') },
    { path: '/station', component: () => import('./pages/station.vue') },
    { path: '/my', component: () => import('./pages/my.vue') },
    { path: '/verify', component: () => import('./pages/verify.vue') },
    { path: '/console', component: () => import('./pages/console.vue') },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})
