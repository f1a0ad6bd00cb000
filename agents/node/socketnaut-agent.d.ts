// Type declarations for socketnaut-agent (socketnaut-agent.js); they need
// @types/node, as Socketnaut's own declarations do.
import type { AddressInfo, Server } from "net";
import { EventEmitter } from "events";

/** Where a relayed connection came from and where it arrived, as the master saw it. */
/** A client of a service that terminates TLS: what the master negotiated with it. */
export interface ProxySocketTLSInfo {
    version: string;
    cipher: string;
    sni?: string;
    alpn?: string;
    clientSubject?: string;
    clientVerified: boolean;
}

export interface ProxySocketAddressInfo {
    local: AddressInfo;
    remote: AddressInfo;
    tls?: ProxySocketTLSInfo;
}

/** A syslog severity, 0 (EMERG) to 7 (DEBUG): lower is more severe. */
export type Level = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;

/** Socketnaut's Level: syslog severities with a reverse map; CRITICAL and BASE from its memoir levels. */
export declare const Level: {
    readonly EMERG: 0;
    readonly ALERT: 1;
    readonly CRIT: 2;
    readonly ERROR: 3;
    readonly WARN: 4;
    readonly NOTICE: 5;
    readonly INFO: 6;
    readonly DEBUG: 7;
    readonly CRITICAL: 2;
    readonly BASE: 7;
    readonly [severity: number]: string;
};

/** The same object as Level, under the name Socketnaut also exports it by. */
export type SyslogLevel = Level;
export declare const SyslogLevel: typeof Level;

/**
 * A level: a Level value, a memoir number (10 debug, 20 info, 30 warn, 40 error,
 * 50 critical) or a name ("debug", "info", "warning", "err", ...).
 */
export type LevelLike = number | string;

/** Socketnaut's Logger as workers use it; each call says whether the line went out. */
export interface Logger {
    (message: unknown, level?: LevelLike): boolean;
    emerg(message: unknown): boolean;
    emergency(message: unknown): boolean;
    alert(message: unknown): boolean;
    crit(message: unknown): boolean;
    critical(message: unknown): boolean;
    error(message: unknown): boolean;
    warn(message: unknown): boolean;
    warning(message: unknown): boolean;
    notice(message: unknown): boolean;
    info(message: unknown): boolean;
    debug(message: unknown): boolean;
    /** Lines less severe than `level` are dropped; INFO by default. */
    setLevel(level: LevelLike): void;
    readonly level: Level;
}

/**
 * What names a relayed connection: an accepted socket, an object with one
 * (an http.IncomingMessage), its peer port, or a peer-info key.
 */
export type PeerSocket =
    | { remoteAddress?: string; remotePort?: number }
    | { socket: { remoteAddress?: string; remotePort?: number } }
    | number
    | string;

export interface ServiceAgentOptions {
    /** The worker's server: READY is sent with its address once it listens. */
    server?: Server;
    /** Exit the process (status 0) after a drain; true by default. */
    exitOnDrain?: boolean;
    /** Milliseconds before an unanswered query resolves to undefined; 5000 by default, 0 for never. */
    queryTimeout?: number;
    /** The control channel's fd; SOCKETNAUT_CONTROL_FD by default. */
    fd?: number;
    /** Where SOCKETNAUT_CONTROL_FD is read; process.env by default. */
    env?: { [name: string]: string | undefined };
    /**
     * mode handoff with handoff_channel = node: send READY at once and
     * serve the connections handed on Node's IPC channel with `server`.
     */
    handoff?: boolean;
}

export declare class ServiceAgent extends EventEmitter {
    constructor(options?: ServiceAgentOptions);
    server: Server | undefined;
    exitOnDrain: boolean;
    queryTimeout: number;
    /** False without a control channel: then every method is a no-op. */
    enabled: boolean;
    draining: boolean;
    addressInfo: string | AddressInfo | null | undefined;
    log: Logger;
    /** Send READY (once): a server.address() result, "host:port", a port or a Unix path. */
    ready(address?: string | number | AddressInfo | null): boolean;
    /** The client's and the listener's addresses, or undefined for a connection the master does not know. */
    requestProxySocketAddressInfo(socket: PeerSocket | null | undefined): Promise<ProxySocketAddressInfo | undefined>;
    /** Tell the master in-flight work is done after a drain (sent once). */
    drained(callback?: () => void): boolean;
    /** mode handoff: emit each handed socket as 'connection' on server; sends READY. */
    serveHandoffs<S extends { emit(event: "connection", socket: any): boolean }>(server: S): S;
    on(event: "drain", listener: () => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: "drain", listener: () => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** The worker's one agent; a second call throws, as in Socketnaut. */
export declare function createServiceAgent(options?: ServiceAgentOptions): ServiceAgent;

/** The agent made by createServiceAgent asks; undefined before there is one. */
export declare function requestProxySocketAddressInfo(socket: PeerSocket | null | undefined): Promise<ProxySocketAddressInfo | undefined>;

/** The module's logger: through the agent once there is one with a channel, else to stderr. */
export declare const log: Logger;

/** The peer-info key of an accepted socket ("ADDRESS:PORT" of its peer), or undefined; a number (a port alone) has none. */
export declare function connectionKey(socket: PeerSocket | null | undefined): string | undefined;

/** One control frame (socketnaut-agent(7)); a `text` field is cut to fit 4096 bytes. */
export declare function encodeFrame(type: number, fields?: ReadonlyArray<readonly [string, string | number]>, text?: string | Buffer): Buffer;

/** A frame's key=value payload; throws on a line without '='. */
export declare function parsePayload(payload: Buffer): { [key: string]: string };

/** Frame types of the control channel. */
export declare const MSG: {
    readonly READY: 0x01;
    readonly PEER_QUERY: 0x02;
    readonly LOG: 0x03;
    readonly DRAINED: 0x04;
    readonly CLOSED: 0x06;
    readonly PEER_INFO: 0x81;
    readonly DRAIN: 0x82;
    readonly HANDOFF: 0x83;
};
