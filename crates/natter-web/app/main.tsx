// The web app's entry: renders the app into #app. Its export `ready` lets a page (and the
// browser tests) reach the same wasm core the app uses.
import { render } from 'preact';
import { App } from './ui/app';
import './app.css';

export { ready } from './core';

const root = document.getElementById('app');
if (root) {
  render(<App />, root);
}
