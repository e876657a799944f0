// The official JavaScript SDK (@google/genai, pinned in package.json) against livegate's Live API WebSocket
// endpoint: only `httpOptions.baseUrl` differs from a program written for the Gemini API. Prints one line per
// step; tests/websocket/test_sdk_js.py runs it against a real stack and checks the lines.
//   LIVEGATE_BASE_URL=http://127.0.0.1:PORT node tests/websocket/js/live.mjs
import { GoogleGenAI, Modality } from '@google/genai';

const BASE_URL = process.env.LIVEGATE_BASE_URL;
const MODEL = 'gemini-live-2.5-flash';
const ai = new GoogleGenAI({ apiKey: 'test-key', httpOptions: { baseUrl: BASE_URL } });

// A session whose messages are queued, and a way to wait for the next one that matches.
async function open(config, model = MODEL) {
  const queue = [];
  let wake = null;
  let closed = null;
  const session = await ai.live.connect({
    model,
    config,
    callbacks: {
      onmessage: (m) => { queue.push(m); if (wake) wake(); },
      onerror: (e) => { console.log(`error: ${e.message}`); },
      onclose: (e) => { closed = e; if (wake) wake(); },
    },
  });
  const next = async (pred) => {
    for (;;) {
      const i = queue.findIndex(pred);
      if (i >= 0) return queue.splice(0, i + 1);
      if (closed) throw new Error(`closed ${closed.code} ${closed.reason}`);
      await new Promise((r) => { wake = r; });
      wake = null;
    }
  };
  return { session, next };
}

const turnComplete = (m) => m.serverContent && m.serverContent.turnComplete;
const textOf = (msgs) => msgs.map((m) => m.text || '').join('');

async function text() {
  const { session, next } = await open({ responseModalities: [Modality.TEXT] });
  session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Hello' }] }], turnComplete: true });
  console.log(`[text] ${textOf(await next(turnComplete))}`);
  session.close();
}

async function audio() {
  const config = { responseModalities: [Modality.AUDIO],
                   realtimeInputConfig: { automaticActivityDetection: { disabled: true } } };
  const { session, next } = await open(config);
  session.sendRealtimeInput({ activityStart: {} });
  const pcm = Buffer.alloc(640 * 25); // 0.5 s of 16 kHz s16le, in 20 ms chunks
  for (let i = 0; i < pcm.length; i += 640) {
    session.sendRealtimeInput({ audio: { data: pcm.subarray(i, i + 640).toString('base64'),
                                         mimeType: 'audio/pcm;rate=16000' } });
  }
  session.sendRealtimeInput({ activityEnd: {} });
  const msgs = await next(turnComplete);
  const bytes = msgs.reduce((n, m) => n + (m.data ? Buffer.from(m.data, 'base64').length : 0), 0);
  const mime = msgs.map((m) => m.serverContent?.modelTurn?.parts?.[0]?.inlineData?.mimeType).find(Boolean);
  console.log(`[audio] ${mime} ${bytes > 4800 ? 'more than 0.1 s' : `only ${bytes} bytes`}`);
  session.close();
}

async function tools() {
  const config = { responseModalities: [Modality.TEXT],
                   tools: [{ functionDeclarations: [{ name: 'turn_on_the_lights' }, { name: 'turn_off_the_lights' }] }] };
  const { session, next } = await open(config);
  session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Turn on the lights please' }] }],
                              turnComplete: true });
  const [call] = (await next((m) => m.toolCall)).pop().toolCall.functionCalls;
  console.log(`[tools] call ${call.name}`);
  session.sendToolResponse({ functionResponses: [{ id: call.id, name: call.name, response: { result: 'ok' } }] });
  console.log(`[tools] ${textOf(await next(turnComplete))}`);
  session.close();
}

async function resumption() {
  const first = await open({ responseModalities: [Modality.TEXT], sessionResumption: {} });
  first.session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Is the sky blue?' }] }], turnComplete: true });
  await first.next(turnComplete);
  const update = (await first.next((m) => m.sessionResumptionUpdate?.newHandle)).pop();
  const handle = update.sessionResumptionUpdate.newHandle;
  console.log(`[resume] handle ${handle.slice(0, 4)}...`);
  first.session.close();
  const second = await open({ responseModalities: [Modality.TEXT], sessionResumption: { handle } });
  second.session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'What was the last question I asked?' }] }],
                                     turnComplete: true });
  console.log(`[resume] ${textOf(await second.next(turnComplete))}`);
  second.session.close();
}

async function unknownModel() {
  try {
    await open({ responseModalities: [Modality.TEXT] }, 'gemini-9-live-nonexistent');
    console.log('[error] no error');
  } catch (e) {
    console.log(`[error] ${e.message}`);
  }
}

for (const step of [text, audio, tools, resumption, unknownModel]) {
  await step();
}
console.log('all done');
