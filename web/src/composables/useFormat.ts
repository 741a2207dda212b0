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

/** Each service type's icon: a name of Vant's icon font (bundled in the build's CSS, no emoji font needed). */
export const SERVICE_ICONS: Record<number, string> = {
  1: 'hot-o', 2: 'brush-o', 3: 'warning-o', 4: 'home-o', 5: 'chat-o', 6: 'todo-list-o', 7: 'music-o', 8: 'bookmark-o', 9: 'like-o', 100: 'gift-o',
}
