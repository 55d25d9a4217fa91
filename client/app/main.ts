// The web app: one connection to a network shared by three pages (Contribute, Playground,
// Network) behind hash routes, and window.aigridApp for scripts and end-to-end tests.
import { startHeader } from './header.ts';
import { contributePage, startContribute } from './pages/contribute.ts';
import { networkPage, startNetwork } from './pages/network.ts';
import { playgroundPage, startPlayground } from './pages/playground.ts';
import { startRouter } from './router.ts';
import { installScripting } from './scripting.ts';

installScripting();
startContribute();
startPlayground();
startNetwork();
startRouter({ contribute: contributePage, playground: playgroundPage, network: networkPage });
startHeader();
