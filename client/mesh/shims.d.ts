// The npm 'process' package ships no types; only its browser shim object is used.
declare module 'process/browser.js' {
  const processShim: object;
  export default processShim;
}
