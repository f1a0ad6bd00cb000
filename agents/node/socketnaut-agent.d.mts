// Type declarations for socketnaut-agent.mjs: the same names as the
// CommonJS entry, which it re-exports.
export * from "./socketnaut-agent.js";
