// The journeys of issue 11 in a real browser (playwright-core driving Debian's /usr/bin/chromium) against
// a real service and chain that tests/test_web.py starts and describes in TIMEBANK_E2E_CONFIG. Pages are
// driven the way a person does: by label, role and visible text.
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, afterEach, before, test } from 'node:test'
import { chromium } from 'playwright-core'

const require = createRequire(import.meta.url)
const cfg = JSON.parse(readFileSync(process.env.TIMEBANK_E2E_CONFIG, 'utf8'))
const AXE = require.resolve('axe-core/axe.min.js')
let browser, context, page
const state = {}

const shot = (name) => page.screenshot({ path: join(cfg.screenshots, `${name}.png`), fullPage: true })
const control = (what) => fetch(`${cfg.control}/${what}`, { method: 'POST' })

/** yyyy-mm-ddThh:mm in Asia/Shanghai, as a datetime-local input takes it. */
function shanghai(unix) {
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(unix * 1000)).map((x) => [x.type, x.value]))
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`
}

async function axe(label) {
  await page.addScriptTag({ path: AXE })
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }))
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  assert.deepEqual(bad.map((v) => `${label}: ${v.id} (${v.impact}) ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`), [])
}

async function unlock(file) {
  if (await page.getByText('已保存的密钥').count()) {
    await page.getByLabel('PIN 码').fill(cfg.pin)
    await page.getByRole('button', { name: '解锁' }).click()
  } else {
    await page.getByLabel('密钥文件（JSON）').setInputFiles(file)
    await page.getByLabel('PIN 码').fill(cfg.pin)
    await page.getByRole('button', { name: '导入密钥文件' }).click()
  }
  await page.getByText('已解锁').waitFor({ timeout: 30000 })
}

/** Fills the terminal's order form; `start`/`end` unix seconds of the service. */
async function fillOrder({ service, start, end, minutes, method }) {
  await page.getByLabel('志愿者卡号').fill(cfg.volunteer)
  await page.getByLabel('服务对象卡号').fill(cfg.recipient)
  await page.getByRole('button', { name: service }).click()
  await page.getByRole('button', { name: '签到' }).click()
  await page.getByText('已签到').waitFor()
  await page.getByRole('button', { name: '签退' }).click()
  await page.getByText('已签退').waitFor()
  await page.getByLabel('起（日期）').fill(shanghai(start))
  await page.getByLabel('止（日期）').fill(shanghai(end))
  await page.getByLabel('时长（分钟）').fill(String(minutes))
  await page.getByRole('button', { name: method }).click()
}

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${cfg.audio}`,
    ],
  })
  context = await browser.newContext({
    baseURL: cfg.url,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    geolocation: { latitude: cfg.home.lat, longitude: cfg.home.lon },
    permissions: ['geolocation', 'microphone'],
    viewport: { width: 1200, height: 900 },
  })
  page = await context.newPage()
  page.on('pageerror', (e) => console.log('page error:', e.message))
})

afterEach(async (t) => {
  // what the page showed at the end of each journey, for a person to look at (build output)
  await page.screenshot({ path: join(cfg.screenshots, `end-${t.name.slice(0, 40).replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true }).catch(() => {})
})

after(async () => {
  await browser?.close()
})

test('a station signs an order with a voice confirmation, submits it, follows it to anchored', async () => {
  await page.goto('/station')
  await unlock(cfg.stationKeystore)
  const now = Math.floor(Date.now() / 1000)
  await fillOrder({ service: '精神慰藉', start: now - 2 * 3600, end: now - 3600, minutes: 60, method: '语音确认' })
  await page.getByRole('button', { name: '开始录音' }).click()
  await page.waitForTimeout(1500)
  await page.getByRole('button', { name: '停止录音' }).click()
  await page.getByTestId('recorded').waitFor()
  await page.getByRole('button', { name: '签名并提交' }).click()
  const row = page.locator('tr[data-order]').first()
  await row.and(page.locator('[data-status="anchored"]')).waitFor({ timeout: 60000 }).catch(async (e) => {
    console.log('queue:', await page.locator('section[aria-labelledby="st-queue"]').innerText(), await page.locator('form').innerText())
    throw e
  })
  state.orderId = await row.getAttribute('data-order')
  assert.match(state.orderId, /^0x[0-9a-f]{64}$/)
  // the recording itself goes to the service once the order is accepted (when the service takes recordings)
  const openapi = await (await fetch(`${cfg.url}/openapi.json`)).json()
  if (Object.keys(openapi.paths).some((p) => p.endsWith('/recording')))
    await page.locator(`tr[data-order="${state.orderId}"][data-recording="uploaded"]`).waitFor({ timeout: 30000 })
  await shot('station')
  // what was signed: the recording's hash in the details, as the service stored them
  const proof = await (await fetch(`${cfg.url}/v1/orders/${state.orderId}/proof`)).json()
  assert.equal(proof.order.minutes, 60)
  assert.equal(proof.order.serviceType, 5)
  state.proof = proof
})

test('the family page shows the new balance and history by card number and check code', async () => {
  await page.goto('/my')
  assert.match(cfg.checkCode ?? '', /\S/, 'the registration answers the card check code')
  // a wrong code opens nothing
  await page.getByLabel('卡号').fill(cfg.recipient)
  await page.getByLabel('卡片校验码').fill('WRONG000')
  await page.getByRole('button', { name: '查询' }).click()
  await page.getByRole('alert').getByText('卡号或校验码不正确').waitFor()
  await page.getByLabel('卡号').fill(cfg.recipient)
  await page.getByLabel('卡片校验码').fill(cfg.checkCode)
  await page.getByRole('button', { name: '查询' }).click()
  await page.getByTestId('balance').waitFor()
  assert.equal((await page.getByTestId('balance').textContent()).trim(), '9 小时') // 600 granted, 60 served
  await page.getByRole('cell', { name: '精神慰藉' }).first().waitFor()
  await page.getByRole('button', { name: /朗读余额/ }).waitFor()
  await shot('my')
  await axe('/my with a card looked up')
})

test('the auditor page verifies the proof green and a tampered copy red at step 1', async () => {
  await page.goto('/verify')
  await page.getByLabel('RPC 地址').fill(cfg.rpcUrl)
  await page.getByLabel('合约地址（市里公布的）').fill(cfg.contract)
  await page.getByLabel(/粘贴证明包/).fill(JSON.stringify(state.proof))
  await page.getByRole('button', { name: '核验', exact: true }).click()
  const verdict = page.getByTestId('verdict')
  await verdict.waitFor({ timeout: 30000 })
  assert.match(await verdict.textContent(), /核验通过：全部 5 步/)
  await shot('verify')
  await axe('/verify with a result')
  const tampered = structuredClone(state.proof)
  tampered.order.minutes = 600
  await page.getByLabel(/粘贴证明包/).fill(JSON.stringify(tampered))
  await page.getByRole('button', { name: '核验', exact: true }).click()
  await page.getByText(/核验未通过：第 1 步/).waitFor({ timeout: 30000 })
  await shot('verify-tampered')
  // batch mode: the whole batch against the anchoring transaction's calldata
  await page.getByLabel('批次号').fill(String(state.proof.batch.id))
  await page.getByRole('button', { name: '核验整批' }).click()
  await page.locator('section[aria-labelledby="v-batch"]').getByText(/核验通过：全部 4 步/).waitFor({ timeout: 30000 })
  await shot('verify-batch')
  // the settings are remembered
  await page.reload()
  assert.equal(await page.getByLabel('合约地址（市里公布的）').inputValue(), cfg.contract)
})

test('a certificate opened from its QR link verifies in the auditor page', async () => {
  // the link the PDF's QR code holds (api/certificates.py qr_payload), with the digest the PDF was made from
  const pdf = await fetch(`${cfg.url}/v1/accounts/${cfg.volunteerAccount}/certificate.pdf`)
  assert.equal(pdf.status, 200)
  const digest = pdf.headers.get('x-certificate-digest')
  assert.match(digest, /^0x[0-9a-f]{64}$/)
  // the kept certificate (GET /v1/certificates/{digest}): exactly the printed one, so its digest matches
  const link = `/verify#certificate=/v1/certificates/${digest}&digest=${digest}`
  await page.goto(link) // the RPC endpoint and contract are the ones the auditor set above (remembered)
  const verdict = page.getByTestId('verdict').first() // the certificate's; each order's own is in its <details>
  await verdict.waitFor({ timeout: 30000 })
  assert.match(await verdict.textContent(), /证书核验通过：60 分钟全部有据/)
  assert.match(await verdict.textContent(), new RegExp(`digest: ✓ ${digest}`))
  assert.match(await verdict.getAttribute('class'), /\bok\b/)
  await page.locator('details summary', { hasText: state.orderId }).waitFor()
  await shot('verify-certificate')
  await axe('/verify with a certificate')
  // a digest that is not the certificate's is shown as not matching (an older PDF's link, by account)
  await page.goto('/')
  await page.goto(`/verify#certificate=/v1/accounts/${cfg.volunteerAccount}/certificate&digest=0x${'00'.repeat(32)}`)
  await page.getByTestId('verdict').first().getByText(/digest: ✗/).waitFor({ timeout: 30000 })
})

test('the console revokes the order; the auditor page then shows it revoked at step 5', async () => {
  await page.goto('/console')
  await unlock(cfg.adminKeystore)
  await page.getByLabel('区划代码').fill(String(cfg.district))
  await page.getByRole('tab', { name: '撤销订单' }).click()
  await page.getByLabel('订单号').fill(state.orderId)
  await page.getByLabel('撤销原因').selectOption('1')
  await page.getByRole('button', { name: '撤销', exact: true }).click()
  await page.getByText(/已完成/).waitFor({ timeout: 60000 })
  // a signed request from the browser (X-TimeBank-* headers): the district's spot-check sample
  await page.getByRole('tab', { name: '抽查' }).click()
  await page.getByLabel('样本数').fill('5')
  await page.getByLabel('随机种子（可选）').fill('7')
  await page.getByRole('button', { name: '抽取样本' }).click()
  await page.getByText(/总数 \d+，种子 7/).waitFor({ timeout: 30000 })
  await page.getByRole('tab', { name: '统计' }).click()
  await page.getByRole('button', { name: '查看' }).click()
  await page.getByRole('img', { name: '各站点服务分钟数' }).waitFor()
  await shot('console')
  await axe('/console unlocked')
  await page.goto('/verify')
  await page.getByLabel(/粘贴证明包/).fill(JSON.stringify(state.proof))
  await page.getByRole('button', { name: '核验', exact: true }).click()
  await page.getByText(/核验未通过：第 5 步/).waitFor({ timeout: 30000 })
  await shot('verify-revoked')
})

test('an order signed while the service is stopped is sent when it is back, once', async () => {
  await page.goto('/station')
  await unlock(cfg.stationKeystore)
  await control('stop')
  try {
    await offlineOrder()
  } finally {
    await control('start')
  }
})

async function offlineOrder() {
  await page.evaluate(async () => { await navigator.serviceWorker.ready })
  const now = Math.floor(Date.now() / 1000)
  await fillOrder({ service: '助餐', start: now - 5 * 3600, end: now - 4 * 3600, minutes: 45, method: '刷卡确认' })
  await page.getByRole('button', { name: '签名并提交' }).click()
  const waiting = page.locator('tr[data-state="queued"]')
  await waiting.first().waitFor({ timeout: 20000 })
  await page.getByText('服务不可达').waitFor({ timeout: 20000 })
  const orderId = await waiting.first().getAttribute('data-order')
  await page.reload() // the outbox is IndexedDB: a reload keeps what waits
  await page.locator(`tr[data-order="${orderId}"][data-state="queued"]`).waitFor()
  await shot('station-offline')
  await control('start')
  const sent = page.locator(`tr[data-order="${orderId}"][data-state="sent"]`)
  await sent.waitFor({ timeout: 60000 })
  const item = await page.evaluate(async (id) => {
    const db = await new Promise((r) => { const q = indexedDB.open('timebank-terminal', 1); q.onsuccess = () => r(q.result) })
    return await new Promise((r) => { const q = db.transaction('outbox').objectStore('outbox').get(id); q.onsuccess = () => r(q.result) })
  }, orderId)
  writeFileSync(join(cfg.screenshots, 'offline-order.json'), JSON.stringify({ orderId, httpStatus: item.httpStatus, attempts: item.attempts }))
  assert.equal(item.httpStatus, 201)
}

test('an order answered 503 (the writer restarting) stays queued and is sent again, once', async () => {
  await page.goto('/station')
  await unlock(cfg.stationKeystore)
  let refused = 0
  const busy = async (route) => {
    if (route.request().method() !== 'POST' || refused >= 2) return route.fallback()
    refused++
    await route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'writer_unavailable', message: '订单写入进程正在重启，请稍后再试', messageZh: '订单写入进程正在重启，请稍后再试', messageEn: 'the order writer is restarting; try again' } }),
    })
  }
  await context.route('**/v1/orders', busy)
  try {
    const now = Math.floor(Date.now() / 1000)
    await fillOrder({ service: '助餐', start: now - 8 * 3600, end: now - 7 * 3600, minutes: 40, method: '刷卡确认' })
    await page.getByRole('button', { name: '签名并提交' }).click()
    const queued = page.locator('tr[data-state="queued"]')
    await queued.first().waitFor({ timeout: 20000 })
    const orderId = await queued.first().getAttribute('data-order')
    await page.locator(`tr[data-order="${orderId}"][data-state="sent"]`).waitFor({ timeout: 30000 })
    assert.equal(refused, 2)
    const answer = await (await fetch(`${cfg.url}/v1/orders/${orderId}`)).json()
    assert.equal(answer.orderId, orderId)
  } finally {
    await context.unroute('**/v1/orders', busy)
  }
})

test('axe-core: no serious or critical violation on any page', async () => {
  for (const path of ['/', '/station', '/my', '/verify', '/console']) {
    await page.goto(path)
    await page.locator('main h1').waitFor()
    await axe(path)
  }
  await page.goto('/')
  await shot('home')
})

test('/docs renders Swagger UI from the service alone (the browser has no internet)', async () => {
  const outside = []
  page.on('request', (r) => !r.url().startsWith(cfg.url) && outside.push(r.url()))
  await page.goto('/docs')
  await page.locator('.swagger-ui .info .title').waitFor({ timeout: 30000 })
  await page.getByText('/v1/orders').first().waitFor()
  assert.deepEqual(outside, [])
  await shot('docs')
})
