import { ref, shallowRef } from 'vue'

/** A voice confirmation recorded with MediaRecorder: the bytes and their MIME type. */
export function useRecorder() {
  const recording = ref(false)
  const result = shallowRef<{ bytes: Uint8Array; mimeType: string } | null>(null)
  const error = ref('')
  let recorder: MediaRecorder | null = null
  let chunks: Blob[] = []

  async function start() {
    error.value = ''
    result.value = null
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true })
      chunks = []
      recorder = new MediaRecorder(stream)
      recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data)
      recorder.onstop = async () => {
        stream.getTracks().forEach((tr) => tr.stop())
        const blob = new Blob(chunks, { type: recorder!.mimeType || 'audio/webm' })
        result.value = { bytes: new Uint8Array(await blob.arrayBuffer()), mimeType: blob.type }
        recording.value = false
      }
      recorder.start(250)
      recording.value = true
    } catch (e) {
      error.value = String((e as Error).message)
    }
  }

  function stop() {
    recorder?.state === 'recording' && recorder.stop()
  }

  function clear() {
    result.value = null
  }

  return { recording, result, error, start, stop, clear }
}
