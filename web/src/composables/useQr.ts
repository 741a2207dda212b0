import jsQR from 'jsqr'

/** The text of the QR code in an image file (a photo of a card or certificate), or null. */
export async function decodeQrFile(file: Blob): Promise<string | null> {
  const bitmap = await createImageBitmap(file)
  const canvas = document.createElement('canvas')
  const scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height))
  canvas.width = Math.round(bitmap.width * scale)
  canvas.height = Math.round(bitmap.height * scale)
  const ctx = canvas.getContext('2d')!
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height)
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height)
  return jsQR(image.data, image.width, image.height)?.data ?? null
}

/** Card number and check code from a card's QR (`…/my#card=…&code=…`, web/API-NEEDS.md section 1). */
export function parseCardQr(text: string): { card: string; code: string } | null {
  const hash = text.includes('#') ? text.slice(text.indexOf('#') + 1) : text.includes('?') ? text.slice(text.indexOf('?') + 1) : ''
  const params = new URLSearchParams(hash)
  const card = params.get('card')
  if (card) return { card, code: params.get('code') ?? '' }
  if (/^[A-Z]{2}-\d{6}-[0-9A-Z]+$/i.test(text.trim())) return { card: text.trim(), code: '' }
  return null
}
