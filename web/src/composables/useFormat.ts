import { useI18n } from 'vue-i18n'

/** Dates in Asia/Shanghai, minutes as hours, service types by name: as people read them. */
export function useFormat() {
  const { t, locale } = useI18n()
  const date = (unix: number) =>
    new Intl.DateTimeFormat(locale.value, { timeZone: 'Asia/Shanghai', year: 'numeric', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit' }).format(new Date(unix * 1000))
  const time = (unix: number) => new Intl.DateTimeFormat(locale.value, { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(unix * 1000))
  const hours = (minutes: number) => String(Math.round((minutes / 60) * 100) / 100)
  const service = (type: number) => t(`service.${type}`)
  return { date, time, hours, service }
}

export const SERVICE_ICONS: Record<number, string> = { 1: '🍲', 2: '🧹', 3: '🚨', 4: '🛁', 5: '💬', 6: '📋', 7: '🎵', 8: '📖', 9: '🩺', 100: '🎁' }
