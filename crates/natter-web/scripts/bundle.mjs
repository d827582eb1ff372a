// Bundles the app (app/main.tsx, with wasm-bindgen's glue from pkg/) into dist/: files named
// by their content's hash under dist/assets/ (served as immutable), index.html pointing at
// them (served as no-cache), and dist/assets.rs, the list natterd embeds with include_bytes!.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(web, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: web,
  entryPoints: ['app/main.tsx'],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: 'dist/assets',
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  publicPath: '/assets',
  loader: { '.wasm': 'file' },
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((path) => relative('dist', path));
const script = outputs.find((path) => path.endsWith('.js'));
const style = outputs.find((path) => path.endsWith('.css'));
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Natter</title>
<link rel="icon" href="data:,">
${style ? `<link rel="stylesheet" href="/${style}">\n` : ''}<link rel="modulepreload" href="/${script}">
<script type="module" src="/${script}"></script>
</head>
<body>
<noscript>Natter's web app needs JavaScript and WebAssembly.</noscript>
<div id="app"></div>
</body>
</html>
`;
writeFileSync(join(dist, 'index.html'), html);

const files = ['index.html', ...outputs.sort()];
const list = files.map((file) => `    ("${file}", include_bytes!("${file}").as_slice()),`).join('\n');
writeFileSync(
  join(dist, 'assets.rs'),
  `// Written by crates/natter-web/scripts/build: the files of the web app natterd serves.\n[\n${list}\n]\n`,
);
console.log(files.map((file) => `dist/${file}`).join('\n'));
