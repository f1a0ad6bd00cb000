'use strict';
/*
 * socketnaut-agent: the worker side of socketnautd's control channel, for
 * Node.js (14.13 or later), no dependencies.  This CommonJS file is the
 * implementation; socketnaut-agent.mjs re-exports it for ES modules (one
 * instance either way), socketnaut-agent.d.ts declares the types, and
 * package.json makes the directory the package "socketnaut-agent".
 *
 * It mirrors Socketnaut's worker side, so a worker module written for
 * Socketnaut runs under socketnautd after changing its import line:
 *
 *     import { createServiceAgent, Level } from "socketnaut";
 * becomes
 *     import { createServiceAgent, Level } from "socketnaut-agent";
 * (npm install /usr/local/lib/node_modules/socketnaut-agent, or
 *  const { createServiceAgent } = require("socketnaut-agent") with
 *  NODE_PATH=/usr/local/lib/node_modules; see README in this directory).
 *
 *     const server = http.createServer();
 *     server.listen({ port: 0, host: '127.0.0.1' });   // the kernel picks a port
 *     const agent = createServiceAgent({ server });    // sends READY on 'listening'
 *     server.on('request', async (req, res) => {
 *         const info = await agent.requestProxySocketAddressInfo(req.socket);
 *         // { local: { address, family, port }, remote: { address, family, port } }
 *         agent.log.info(`client ${info.remote.address}:${info.remote.port}`);
 *         res.end('Hello, World!');
 *     });
 *
 * Run it with backend = "agent" (the master connects to the port the agent
 * reports) or backend = "tcp" (listen on process.env.PORT).  Node cannot
 * read a Unix socket's peer name, so peer info needs a TCP backend.
 *
 * requestProxySocketAddressInfo resolves to undefined when the master does
 * not know the connection (not relayed by socketnautd, already closed, no
 * control channel), as Socketnaut's did for an unknown socket.
 *
 * On DRAIN the agent calls server.close() (no new connections; idle
 * keep-alive connections are closed by Node >= 19), waits for the open
 * connections to end, sends DRAINED and exits the process (exit status 0),
 * as Socketnaut's tryTerminate did.  createServiceAgent({ server,
 * exitOnDrain: false }) leaves the exit to you; agent.on('drain', fn) is
 * told when a drain starts.
 *
 * Services in mode handoff (socketnaut.conf(5)) with handoff_channel =
 * node: the master hands each client's socket to the worker on Node's IPC
 * channel (NODE_CHANNEL_FD, set up by Node at start), the way node:cluster's
 * primary passes connections.  createServiceAgent({ server, handoff: true })
 * sends READY at once (the server listens nowhere), turns every handed
 * socket into server.emit('connection', socket), and reports its close.
 * requestProxySocketAddressInfo answers for a handed socket at once.  On
 * DRAIN, idle handed connections are ended, busy ones after their current
 * response (Connection: close), then DRAINED and exit.  Limits: Node's
 * channel carries one JSON line and an ACK per connection (its throughput
 * is node:cluster's); the program must not use process.send/'message' for
 * anything that looks like a handoff; a child process started from the
 * worker must not inherit NODE_CHANNEL_FD (Node removes it from
 * process.env at start).
 *
 * Without SOCKETNAUT_CONTROL_FD (run on its own, or control = false) the
 * agent is a no-op: agent.enabled is false, requestProxySocketAddressInfo
 * resolves to undefined, logs are dropped.  The channel is unref'ed: the
 * agent never keeps the process alive by itself.
 */

const net = require('net');
const { EventEmitter } = require('events');

const VERSION = 1;
const HEADER = 4;
const MAX_PAYLOAD = 4096;

const MSG = Object.freeze({
    READY: 0x01,
    PEER_QUERY: 0x02,
    LOG: 0x03,
    DRAINED: 0x04,
    HELLO: 0x05, /* not sent: Node cannot read a Unix peer name anyway */
    CLOSED: 0x06,
    PEER_INFO: 0x81,
    DRAIN: 0x82,
    HANDOFF: 0x83,
});

/* Peers of the connections socketnautd handed us, as it told them. */
const handedInfo = new WeakMap();

/*
 * Socketnaut's Level (since 1.5 its SyslogLevel): syslog severities, lower
 * is more severe, with a reverse map as a TypeScript enum has.  CRITICAL and
 * BASE are kept from Socketnaut's earlier (memoir) levels; memoir numbers
 * (10 debug .. 50 critical) are still understood by setLevel and log.
 */
const Level = {
    EMERG: 0, ALERT: 1, CRIT: 2, ERROR: 3, WARN: 4, NOTICE: 5, INFO: 6, DEBUG: 7,
    CRITICAL: 2, BASE: 7,
};
['EMERG', 'ALERT', 'CRIT', 'ERROR', 'WARN', 'NOTICE', 'INFO', 'DEBUG'].forEach((k, v) => {
    Level[v] = k;
});
Object.freeze(Level);
const SyslogLevel = Level;

const NAMES = {
    emerg: 0, emergency: 0, panic: 0, alert: 1, crit: 2, critical: 2, fatal: 2,
    err: 3, error: 3, warning: 4, warn: 4, notice: 5, info: 6, information: 6,
    debug: 7, trace: 7, base: 7,
};

/* A level given by name, syslog number 0..7 or Socketnaut Level number -> syslog 0..7. */
function syslogLevel(level) {
    if (level === undefined || level === null) return 6;
    if (typeof level === 'number') {
        if (Number.isInteger(level) && level >= 0 && level <= 7) return level;
        if (level >= 50) return 2;     // memoir CRITICAL
        if (level >= 40) return 3;
        if (level >= 30) return 4;
        if (level >= 20) return 6;
        return 7;
    }
    const name = String(level).trim().toLowerCase();
    if (/^[0-7]$/.test(name)) return Number(name);
    if (name in NAMES) return NAMES[name];
    throw new RangeError(`unknown log level ${String(level)}`);
}

function clean(value) {
    // eslint-disable-next-line no-control-regex
    return String(value).replace(/[\x00-\x1f\x7f]/g, ' ');
}

/* One frame: version, type, 16-bit big-endian payload length, payload. */
function encodeFrame(type, fields = [], text) {
    let payload = Buffer.from(fields.map(([k, v]) => `${k}=${clean(v)}`).join('\n'));
    if (text !== undefined) {
        const head = Buffer.concat([payload, Buffer.from(payload.length ? '\ntext=' : 'text=')]);
        const body = Buffer.isBuffer(text) ? text : Buffer.from(String(text));
        payload = Buffer.concat([head, body.subarray(0, Math.max(0, MAX_PAYLOAD - head.length))]);
    }
    if (payload.length > MAX_PAYLOAD) throw new RangeError(`payload of ${payload.length} bytes`);
    const frame = Buffer.alloc(HEADER + payload.length);
    frame[0] = VERSION;
    frame[1] = type;
    frame.writeUInt16BE(payload.length, 2);
    payload.copy(frame, HEADER);
    return frame;
}

/* key=value lines -> object; a `text` field runs to the end of the payload. */
function parsePayload(buf) {
    const fields = {};
    let rest = buf;
    while (rest.length) {
        if (rest.subarray(0, 5).toString('latin1') === 'text=') {
            fields.text = rest.subarray(5).toString();
            break;
        }
        let nl = rest.indexOf(0x0a);
        if (nl === -1) nl = rest.length;
        const line = rest.subarray(0, nl).toString();
        rest = rest.subarray(nl + 1);
        const eq = line.indexOf('=');
        if (eq === -1) throw new Error(`field without '=': ${line.slice(0, 40)}`);
        fields[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return fields;
}

/*
 * The peer-info key of an accepted socket: the address and port of its peer
 * (the master's end), "127.0.0.1:54321" or "[::1]:54321".  A port alone is
 * no key: another local user could connect from it on another address.
 */
function connectionKey(socket) {
    if (socket === undefined || socket === null || typeof socket === 'number') return undefined;
    if (typeof socket === 'string') return socket || undefined;
    // http.IncomingMessage -> its socket; TLS sockets expose remotePort too.
    if (socket.socket && socket.socket !== socket && socket.remotePort === undefined) {
        return connectionKey(socket.socket);
    }
    const port = socket.remotePort;
    const address = socket.remoteAddress;
    if (typeof port !== 'number' || port <= 0 || typeof address !== 'string' || !address) {
        return undefined;
    }
    return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function toAddressInfo(fields, side) {
    const port = Number.parseInt(fields[`${side}_port`], 10);
    return {
        address: fields[`${side}_address`],
        family: fields[`${side}_family`],
        port: Number.isNaN(port) ? undefined : port,
    };
}

/* A peer-info reply; tls only for a client of a service that terminates TLS. */
function toPeerInfo(fields) {
    const info = { local: toAddressInfo(fields, 'local'), remote: toAddressInfo(fields, 'remote') };
    if (fields.tls_version !== undefined) {
        info.tls = {
            version: fields.tls_version,
            cipher: fields.tls_cipher,
            sni: fields.tls_sni,
            alpn: fields.tls_alpn,
            clientSubject: fields.tls_client_subject,
            clientVerified: fields.tls_client_verified === '1',
        };
    }
    return info;
}

/* A log message as text: strings as they are, errors with their stack. */
function messageText(message) {
    if (typeof message === 'string') return message;
    if (message instanceof Error) return message.stack || message.message;
    const json = JSON.stringify(message);
    return json === undefined ? String(message) : json;
}

/*
 * Socketnaut's Logger as far as workers use it: log(message, level), one
 * method per level, setLevel.  INFO and above pass by default; `sink`
 * gets (syslog level 0..7, text) and says whether the line went out.
 */
function makeLogger(sink) {
    let threshold = 6;
    const logger = function log(message, level) {
        const n = syslogLevel(level);
        if (n > threshold) return false;
        return sink(n, messageText(message));
    };
    const at = (n) => (message) => logger(message, n);
    logger.emerg = at(0);
    logger.emergency = logger.emerg;
    logger.alert = at(1);
    logger.crit = at(2);
    logger.critical = logger.crit;
    logger.error = at(3);
    logger.warn = at(4);
    logger.warning = logger.warn;
    logger.notice = at(5);
    logger.info = at(6);
    logger.debug = at(7);
    logger.setLevel = (level) => {
        threshold = syslogLevel(level);
    };
    Object.defineProperty(logger, 'level', { get: () => threshold, enumerable: true });
    return logger;
}

let serviceAgent = null;

class ServiceAgent extends EventEmitter {
    constructor(options = {}) {
        super();
        this.server = options.server;
        this.exitOnDrain = options.exitOnDrain !== false;
        this.queryTimeout = options.queryTimeout === undefined ? 5000 : options.queryTimeout;
        this.enabled = false;
        this.draining = false;
        this.addressInfo = undefined;
        this._socket = null;
        this._buf = Buffer.alloc(0);
        this._pending = new Map();
        this._nextId = 1;
        this._readySent = false;
        this._drainedSent = false;
        this.log = makeLogger((n, text) => this._sendLog(n, text));

        const fdText = (options.env || process.env).SOCKETNAUT_CONTROL_FD;
        const fd = options.fd !== undefined ? options.fd :
            (fdText !== undefined && /^\d+$/.test(fdText) ? Number(fdText) : undefined);
        if (fd !== undefined) {
            try {
                const sock = new net.Socket({ fd, readable: true, writable: true });
                sock.unref();
                sock.on('data', (chunk) => this._onData(chunk));
                sock.on('error', (err) => this._lost(err));
                sock.on('close', () => this._lost());
                sock.on('end', () => this._lost());
                this._socket = sock;
                this.enabled = true;
            } catch (err) {
                process.emitWarning(`socketnaut-agent: control fd ${fd}: ${err.message}`);
            }
        }

        this._handed = new Set();
        this._busy = new WeakMap();
        if (this.server && options.handoff) {
            this.serveHandoffs(this.server);
        } else if (this.server) {
            if (this.server.listening) {
                this._onListening();
            } else {
                this.server.once('listening', () => this._onListening());
            }
        }
    }

    _send(frame) {
        if (!this.enabled || !this._socket || this._socket.destroyed) return false;
        this._socket.write(frame);
        return true;
    }

    _sendLog(level, text) {
        return this._send(encodeFrame(MSG.LOG, [['level', level]], text));
    }

    /* READY; `address` may be a server.address() result, "host:port", a port or a Unix path. */
    ready(address) {
        if (!this.enabled || this._readySent) return false;
        const fields = [];
        if (typeof address === 'number') {
            fields.push(['port', address]);
        } else if (typeof address === 'string') {
            fields.push(['address', address.startsWith('/') ? `unix:${address}` : address]);
        } else if (address && typeof address.port === 'number') {
            const host = address.address;
            if (!host || host === '0.0.0.0' || host === '::') {
                fields.push(['port', address.port]);
            } else {
                fields.push(['address', host.includes(':') ? `[${host}]:${address.port}` : `${host}:${address.port}`]);
            }
        }
        this._readySent = true;
        return this._send(encodeFrame(MSG.READY, fields));
    }

    _onListening() {
        this.addressInfo = this.server.address();
        this.ready(this.addressInfo);
    }

    /*
     * mode handoff, handoff_channel = node: serve the connections the
     * master hands over on Node's IPC channel with `server` (an http,
     * https-less or net server that listens nowhere).  Sends READY.
     */
    serveHandoffs(server) {
        this.server = server;
        this._handoff = true;
        process.on('message', (msg, handle) => this._onHandoff(msg, handle));
        if (typeof server.on === 'function') {
            server.on('request', (req, res) => this._trackRequest(req, res));
        }
        this.ready();
        return server;
    }

    _onHandoff(msg, socket) {
        if (!msg || msg.socketnaut !== 'handoff' || !socket || typeof socket.once !== 'function') return;
        const id = Number(msg.id);
        const side = (name) => ({
            address: msg[`${name}_address`],
            family: msg[`${name}_family`],
            port: Number(msg[`${name}_port`]),
        });
        handedInfo.set(socket, { local: side('local'), remote: side('remote') });
        this._handed.add(socket);
        socket.once('close', () => {
            this._handed.delete(socket);
            this._send(encodeFrame(MSG.CLOSED, [['id', id]]));
            if (this.draining && this._handed.size === 0 && this._drainDone) this._drainDone();
        });
        this.server.emit('connection', socket);
        if (this.draining) this._endIfIdle(socket);
    }

    _trackRequest(req, res) {
        const socket = req.socket;
        if (!this._handed.has(socket)) return;
        this._busy.set(socket, (this._busy.get(socket) || 0) + 1);
        if (this.draining) res.setHeader('Connection', 'close');
        res.once('close', () => {
            this._busy.set(socket, this._busy.get(socket) - 1);
            if (this.draining) this._endIfIdle(socket);
        });
    }

    /* Idle: closed once what it was answered is written. */
    _endIfIdle(socket) {
        if (this._busy.get(socket)) return;
        if (socket.writableLength > 0) socket.end(() => socket.destroy());
        else socket.destroy();
    }

    /* Resolves to { local, remote } for a relayed connection, or undefined. */
    requestProxySocketAddressInfo(socket) {
        const handed = socket && handedInfo.get(socket);
        if (handed) return Promise.resolve(handed);
        const key = connectionKey(socket);
        if (!this.enabled || key === undefined || !this._socket || this._socket.destroyed) {
            return Promise.resolve(undefined);
        }
        return new Promise((resolve) => {
            const id = this._nextId++;
            let timer = null;
            if (this.queryTimeout > 0) {
                timer = setTimeout(() => {
                    this._pending.delete(id);
                    resolve(undefined);
                }, this.queryTimeout);
                timer.unref();
            }
            this._pending.set(id, (info) => {
                if (timer) clearTimeout(timer);
                resolve(info);
            });
            this._send(encodeFrame(MSG.PEER_QUERY, [['id', id], ['key', key]]));
        });
    }

    /* Tell the master in-flight work is done after a DRAIN (sent once). */
    drained(callback) {
        if (!this.enabled || this._drainedSent || !this._socket || this._socket.destroyed) {
            if (callback) setImmediate(callback);
            return false;
        }
        this._drainedSent = true;
        this._socket.write(encodeFrame(MSG.DRAINED), () => { if (callback) callback(); });
        return true;
    }

    _onDrain() {
        if (this.draining) return;
        this.draining = true;
        this.emit('drain');
        const finish = () => {
            this.drained(() => {
                if (this.exitOnDrain) setImmediate(() => process.exit(0));
            });
        };
        if (!this.server) {
            finish();
            return;
        }
        if (this._handoff) {
            // The connections handed before the DRAIN are ours to finish.
            if (this._handed.size === 0) {
                finish();
                return;
            }
            this._drainDone = () => { this._drainDone = null; finish(); };
            for (const socket of this._handed) this._endIfIdle(socket);
            return;
        }
        try {
            this.server.close(() => finish());   // called once every connection has ended
        } catch (err) {
            finish();
        }
    }

    _onData(chunk) {
        this._buf = this._buf.length ? Buffer.concat([this._buf, chunk]) : chunk;
        while (this._buf.length >= HEADER) {
            const version = this._buf[0];
            const type = this._buf[1];
            const len = this._buf.readUInt16BE(2);
            if (version !== VERSION || len > MAX_PAYLOAD) {
                this._lost(new Error(`bad frame from the master (version ${version}, length ${len})`));
                return;
            }
            if (this._buf.length < HEADER + len) break;
            const payload = this._buf.subarray(HEADER, HEADER + len);
            this._buf = this._buf.subarray(HEADER + len);
            let fields;
            try {
                fields = parsePayload(payload);
            } catch (err) {
                this._lost(err);
                return;
            }
            if (type === MSG.PEER_INFO) {
                const id = Number.parseInt(fields.id, 10);
                const done = this._pending.get(id);
                if (done) {
                    this._pending.delete(id);
                    done(fields.status === 'ok' ? toPeerInfo(fields) : undefined);
                }
            } else if (type === MSG.DRAIN) {
                this._onDrain();
            }
        }
    }

    _lost(err) {
        if (err) process.emitWarning(`socketnaut-agent: control channel: ${err.message}`);
        if (this._socket && !this._socket.destroyed) this._socket.destroy();
        const pending = this._pending;
        this._pending = new Map();
        for (const done of pending.values()) done(undefined);
    }
}

/*
 * Socketnaut's entry point: one agent per worker.  As in Socketnaut, a
 * second call throws.
 */
function createServiceAgent(options) {
    if (serviceAgent) throw new Error('A ServiceAgent has already been instantiated for this worker.');
    serviceAgent = new ServiceAgent(options);
    return serviceAgent;
}

/*
 * The module's own logger, as Socketnaut exports one: through the worker's
 * agent into the daemon's log once createServiceAgent has made one with a
 * control channel that works, else to stderr (which socketnautd logs too).
 */
const log = makeLogger((n, text) => {
    if (serviceAgent && serviceAgent.enabled && serviceAgent._sendLog(n, text)) return true;
    process.stderr.write(`<${Level[n]}> ${new Date().toISOString()} ${process.pid} - ${text}\n`);
    return true;
});

/* The worker's agent answers; undefined without one, as for an unknown socket. */
function requestProxySocketAddressInfo(socket) {
    if (!serviceAgent) return Promise.resolve(undefined);
    return serviceAgent.requestProxySocketAddressInfo(socket);
}

exports.createServiceAgent = createServiceAgent;
exports.ServiceAgent = ServiceAgent;
exports.requestProxySocketAddressInfo = requestProxySocketAddressInfo;
exports.Level = Level;
exports.SyslogLevel = SyslogLevel;
exports.log = log;
exports.connectionKey = connectionKey;
exports.encodeFrame = encodeFrame;
exports.parsePayload = parsePayload;
exports.MSG = MSG;
