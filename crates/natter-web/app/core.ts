// Natter's Rust core (natter-web, compiled to wasm): loaded once, shared by every screen.
import init, * as core from '../pkg/natter_web.js';
import wasmUrl from '../pkg/natter_web_bg.wasm';

/** The core's bindings: the `Natter` class, natter-client's device for the app. */
export type Core = typeof core;

/** Resolves once the wasm module is compiled and instantiated. */
export const ready: Promise<Core> = init({ module_or_path: wasmUrl }).then(() => core);
