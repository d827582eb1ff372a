/** A `.wasm` import is the URL esbuild gives the hashed file it copies. */
declare module '*.wasm' {
  const url: string;
  export default url;
}

/** A `.css` import adds the stylesheet to the bundle's hashed CSS file. */
declare module '*.css';
