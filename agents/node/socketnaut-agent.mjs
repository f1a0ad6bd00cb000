// socketnaut-agent for ES modules: the CommonJS implementation re-exported
// by name, so ESM and CommonJS callers in one process share one agent.
import agent from './socketnaut-agent.js';

export const {
    createServiceAgent,
    ServiceAgent,
    requestProxySocketAddressInfo,
    Level,
    SyslogLevel,
    log,
    connectionKey,
    encodeFrame,
    parsePayload,
    MSG,
} = agent;
