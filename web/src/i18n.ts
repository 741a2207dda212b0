import { createI18n } from 'vue-i18n'
import zhCN from './locales/zh-CN.json'
import en from './locales/en.json'

export const LANGUAGES = ['zh-CN', 'en'] as const
export type Language = (typeof LANGUAGES)[number]

const saved = (typeof localStorage !== 'undefined' && localStorage.getItem('timebank.language')) as Language | null

export const i18n = createI18n({
  legacy: false,
  locale: saved && LANGUAGES.includes(saved) ? saved : 'zh-CN',
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zhCN, en },
  missingWarn: false,
  fallbackWarn: false,
})
