#!/usr/bin/env node
// A Node.js caller of livegate's LiveGateway, loading proto/ at run time with @grpc/proto-loader.
//
//   cd examples/node && npm ci && LIVEGATE_TARGET=127.0.0.1:50051 node caller.js
//
// It holds two Live conversations over `LiveGateway.Connect`:
//   (a) a text turn: setup (TEXT replies) -> `session` (seq 0) -> `setup_complete` (seq 1) -> a `client_content`
//       turn -> the `server_content` text until `turn_complete`; then `GetSession` while the session is live;
//   (b) a function call: `turn_on_the_lights` declared in `setup.tools`, the `tool_call` answered with a
//       `tool_response` (same `id` and `name`, `response` = {"result": "ok"}), then the model's final text.
// Each conversation ends the way a caller should end one: half-close (`call.end()`) and read until the gateway
// ends the stream with status OK. Any gRPC error ends the program with exit code 1 and the status code,
// message and google.rpc.ErrorInfo (reason, domain, metadata) printed to stderr.
//
// Environment: LIVEGATE_TARGET (host:port, default 127.0.0.1:50051), LIVEGATE_MODEL (default
// gemini-live-2.5-flash), LIVEGATE_TLS=1 for a TLS front (system roots), LIVEGATE_DEADLINE_S (per RPC, default 30;
// the deadline covers a whole Connect stream, so a real conversation needs a longer one, or none).
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const TARGET = process.env.LIVEGATE_TARGET || '127.0.0.1:50051';
const MODEL = process.env.LIVEGATE_MODEL || 'gemini-live-2.5-flash';
const DEADLINE_S = Number(process.env.LIVEGATE_DEADLINE_S || 30);
const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');

// keepCase: field names stay the proto's snake_case (the Live API's names: generation_config, turn_complete, ...).
// longs/enums as strings: uint64 `seq` arrives as '1', '2', ...; enums by name ('TEXT', 'ACTIVE').
// oneofs: each oneof gets a virtual field naming its set member: ServerMessage.message === 'server_content'.
// defaults: false, so an unset field is absent (`seq` is absent on the seq-0 `session` message).
//
// The google/protobuf/*.proto imports (duration, struct, timestamp) are not read from disk: protobufjs
// resolves them to its bundled copies before consulting includeDirs. Those bundled definitions have
// lowerCamelCase field names whatever keepCase says, so a google.protobuf.Struct is
// {fields: {result: {stringValue: 'ok'}}} (NOT string_value: protobufjs would silently drop it and the
// function would "return" {"result": null}). See toStruct/fromStruct below.
const packageDefinition = protoLoader.loadSync('livegate/v1/gateway.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const livegate = grpc.loadPackageDefinition(packageDefinition).livegate.v1;

// google.rpc.Status / ErrorInfo / RetryInfo (googleapis google/rpc/*.proto, same field numbers), to decode the
// `grpc-status-details-bin` trailer the gateway attaches to every error status.
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            RetryInfo: { fields: { retry_delay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
      },
    },
  },
});

/** A plain JSON object -> google.protobuf.Struct in protobufjs object form. */
function toStruct(obj) {
  const fields = {};
  for (const [key, value] of Object.entries(obj)) fields[key] = toValue(value);
  return { fields };
}

function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

/** google.protobuf.Struct in protobufjs object form -> a plain JSON object. */
function fromStruct(struct) {
  const out = {};
  for (const [key, value] of Object.entries((struct && struct.fields) || {})) out[key] = fromValue(value);
  return out;
}

function fromValue(v) {
  if ('stringValue' in v) return v.stringValue;
  if ('numberValue' in v) return v.numberValue;
  if ('boolValue' in v) return v.boolValue;
  if ('structValue' in v) return fromStruct(v.structValue);
  if ('listValue' in v) return ((v.listValue && v.listValue.values) || []).map(fromValue);
  return null;
}

function deadline() {
  return new Date(Date.now() + DEADLINE_S * 1000);
}

/**
 * One `Connect` stream: writes ClientMessages, reads ServerMessages in order, and checks the gateway's stream
 * contract (first message `session` with seq 0, then seq 1, 2, 3, ... without gaps).
 */
class LiveStream {
  constructor(client, label) {
    this.label = label;
    this.call = client.Connect(new grpc.Metadata(), { deadline: deadline() });
    this.status = null;
    this.call.on('status', (status) => { this.status = status; });
    this.messages = this.call[Symbol.asyncIterator]();
    this.lastSeq = null;
    this.sessionId = '';
    this.reattachToken = '';
  }

  log(line) {
    console.log(`[${this.label}]`.padEnd(8) + line);
  }

  send(message) {
    this.call.write(message);
  }

  /** The next ServerMessage, or null when the gateway ended the stream with OK (throws the gRPC error otherwise). */
  async read() {
    const { value, done } = await this.messages.next();
    if (done) return null;
    const seq = Number(value.seq || 0);
    const expected = this.lastSeq === null ? 0 : this.lastSeq + 1;
    if (seq !== expected) throw new Error(`${this.label}: got seq ${seq} (${value.message}), expected ${expected}`);
    this.lastSeq = seq;
    return value;
  }

  /** The next ServerMessage, which must be of `kind`. */
  async expect(kind) {
    const msg = await this.read();
    if (msg === null) throw new Error(`${this.label}: the stream ended while waiting for ${kind}`);
    if (msg.message !== kind) throw new Error(`${this.label}: expected ${kind}, got ${msg.message}`);
    return msg;
  }

  /** Sends `setup` and reads `session` (seq 0) and `setup_complete` (seq 1). */
  async open(setup) {
    this.send({ setup });
    const session = await this.expect('session');
    this.sessionId = session.session.session_id;
    this.reattachToken = session.session.reattach_token; // keep it to `reattach` after a broken stream
    this.log(`session ${this.sessionId} (seq 0)`);
    await this.expect('setup_complete');
    this.log('setup_complete (seq 1)');
  }

  /**
   * Reads one model turn: prints its text, hands `tool_call`s to `onToolCall`, returns the text after
   * `server_content.turn_complete`.
   */
  async turn(onToolCall) {
    let text = '';
    for (;;) {
      const msg = await this.read();
      if (msg === null) throw new Error(`${this.label}: the stream ended in the middle of a turn`);
      if (msg.message === 'tool_call') {
        if (!onToolCall) throw new Error(`${this.label}: unexpected tool_call`);
        onToolCall(msg.tool_call);
      } else if (msg.message === 'server_content') {
        const sc = msg.server_content;
        for (const part of (sc.model_turn && sc.model_turn.parts) || []) {
          if (part.text && !part.thought) text += part.text;
        }
        if (sc.turn_complete) {
          this.log(`< ${text}`);
          this.log(`turn_complete (seq ${msg.seq})`);
          return text;
        }
      }
      // Other messages (usage_metadata alone, session_resumption_update, upstream_renewed, drain, ...) are
      // not needed here.
    }
  }

  /** Half-closes the stream and reads until the gateway ends it; resolves with the final status. */
  async close() {
    this.call.end();
    for (let msg = await this.read(); msg !== null; msg = await this.read()) {
      this.log(`after half-close: ${msg.message} (seq ${msg.seq})`);
    }
    if (this.status === null) await new Promise((resolve) => this.call.once('status', resolve));
    this.log(`stream ended: ${grpc.status[this.status.code]}`);
  }
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, new grpc.Metadata(), { deadline: deadline() }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

async function textTurn(client) {
  const stream = new LiveStream(client, 'text');
  await stream.open({ model: MODEL, generation_config: { response_modalities: ['TEXT'] } });

  const prompt = 'Hello';
  stream.send({ client_content: { turns: [{ role: 'user', parts: [{ text: prompt }] }], turn_complete: true } });
  stream.log(`> ${prompt}`);
  await stream.turn();

  // (c) GetSession while the session is live (the stream is still open).
  const session = await unary(client, 'GetSession', { session_id: stream.sessionId });
  if (session.session_id !== stream.sessionId) throw new Error(`GetSession returned session ${session.session_id}`);
  const counters = session.counters || {};
  console.log(`[get]   session ${session.session_id}: state=${session.state} model=${session.model} `
    + `flavour=${session.flavour} client_messages=${counters.client_messages || 0} `
    + `server_messages=${counters.server_messages || 0}`);

  await stream.close();
}

async function functionCall(client) {
  const stream = new LiveStream(client, 'tools');
  await stream.open({
    model: MODEL,
    generation_config: { response_modalities: ['TEXT'] },
    tools: [{ function_declarations: [{ name: 'turn_on_the_lights', description: 'Turns on the lights.' }] }],
  });

  const prompt = 'Turn on the lights please';
  stream.send({ client_content: { turns: [{ role: 'user', parts: [{ text: prompt }] }], turn_complete: true } });
  stream.log(`> ${prompt}`);
  let calls = 0;
  await stream.turn((toolCall) => {
    const responses = (toolCall.function_calls || []).map((fc) => {
      calls += 1;
      stream.log(`< tool_call ${fc.name}(${JSON.stringify(fromStruct(fc.args))}) id=${fc.id}`);
      return { id: fc.id, name: fc.name, response: toStruct({ result: 'ok' }) };
    });
    stream.send({ tool_response: { function_responses: responses } });
    const sent = responses.map((r) => `${r.name} ${JSON.stringify(fromStruct(r.response))}`);
    stream.log(`> tool_response ${sent.join(', ')}`);
  });
  if (calls === 0) throw new Error('tools: the turn completed without a tool_call');

  await stream.close();
}

function describe(err) {
  if (err.code === undefined || !err.metadata) return err.stack || String(err);
  const lines = [`gRPC error ${grpc.status[err.code]} (${err.code}): ${err.details}`];
  for (const raw of err.metadata.get('grpc-status-details-bin')) {
    const status = rpcTypes.lookupType('google.rpc.Status').decode(raw);
    for (const any of status.details) {
      const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
      if (type === 'google.rpc.ErrorInfo') {
        const info = rpcTypes.lookupType('google.rpc.ErrorInfo').decode(any.value);
        lines.push(`  ErrorInfo reason=${info.reason} domain=${info.domain} metadata=${JSON.stringify(info.metadata)}`);
      } else if (type === 'google.rpc.RetryInfo') {
        const retry = rpcTypes.lookupType('google.rpc.RetryInfo').decode(any.value).retry_delay || {};
        lines.push(`  RetryInfo retry_delay=${Number(retry.seconds || 0) + (retry.nanos || 0) / 1e9}s`);
      } else {
        lines.push(`  detail ${any.type_url}`);
      }
    }
  }
  return lines.join('\n');
}

async function main() {
  const credentials = process.env.LIVEGATE_TLS === '1'
    ? grpc.credentials.createSsl()
    : grpc.credentials.createInsecure();
  const client = new livegate.LiveGateway(TARGET, credentials);
  console.log(`connecting to ${TARGET}`);
  try {
    await textTurn(client);
    await functionCall(client);
  } finally {
    client.close();
  }
  console.log('all done');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`caller failed: ${describe(err)}`);
    process.exit(1);
  },
);
