import { createApp } from 'vue'
import { Button, Cell, CellGroup, Icon, Tab, Tabs, Tag } from 'vant'
import 'vant/lib/index.css'
import './style.css'
import App from './App.vue'
import { router } from './router'
import { i18n } from './i18n'

createApp(App).use(router).use(i18n).use(Button).use(Icon).use(Cell).use(CellGroup).use(Tab).use(Tabs).use(Tag).mount('#app')

// the pages' files kept on the device (public/sw.js): the terminal reloads while the service is unreachable
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => {})
