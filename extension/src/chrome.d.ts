// The part of the chrome.* extension API this extension uses, declared here because @types/chrome
// is not installed. Signatures follow Chrome's documentation (Manifest V3, promise forms). With
// @types/chrome installed and added to tsconfig's "types", delete this file.

declare namespace chrome {
  namespace events {
    interface Event<T extends (...args: never[]) => unknown> {
      addListener(callback: T): void;
      removeListener(callback: T): void;
      hasListener(callback: T): boolean;
    }
  }

  namespace runtime {
    interface MessageSender {
      id?: string;
      url?: string;
      origin?: string;
      tab?: { id?: number; url?: string };
      frameId?: number;
      documentId?: string;
    }

    interface Port {
      readonly name: string;
      readonly sender?: MessageSender;
      postMessage(message: unknown): void;
      disconnect(): void;
      onMessage: events.Event<(message: unknown, port: Port) => void>;
      onDisconnect: events.Event<(port: Port) => void>;
    }

    type ContextType = 'TAB' | 'POPUP' | 'BACKGROUND' | 'OFFSCREEN_DOCUMENT' | 'SIDE_PANEL' | 'DEVELOPER_TOOLS';
    interface ExtensionContext {
      contextType: ContextType;
      contextId: string;
      documentUrl?: string;
      documentOrigin?: string;
    }
    interface ContextFilter {
      contextTypes?: ContextType[];
      documentUrls?: string[];
    }

    interface InstalledDetails {
      reason: 'install' | 'update' | 'chrome_update' | 'shared_module_update';
      previousVersion?: string;
    }

    const id: string;
    const lastError: { message?: string } | undefined;
    function getURL(path: string): string;
    function connect(connectInfo?: { name?: string }): Port;
    function sendMessage(message: unknown): Promise<unknown>;
    function getContexts(filter: ContextFilter): Promise<ExtensionContext[]>;
    function openOptionsPage(): Promise<void>;
    function reload(): void;
    const onMessage: events.Event<(message: unknown, sender: MessageSender, sendResponse: (response?: unknown) => void) => boolean | undefined | void>;
    const onConnect: events.Event<(port: Port) => void>;
    const onStartup: events.Event<() => void>;
    const onInstalled: events.Event<(details: InstalledDetails) => void>;
  }

  namespace storage {
    interface StorageChange {
      oldValue?: unknown;
      newValue?: unknown;
    }
    interface StorageArea {
      get(keys: string | string[] | null): Promise<Record<string, unknown>>;
      set(items: Record<string, unknown>): Promise<void>;
      remove(keys: string | string[]): Promise<void>;
      clear(): Promise<void>;
    }
    const local: StorageArea;
    const session: StorageArea;
    const onChanged: events.Event<(changes: Record<string, StorageChange>, areaName: 'local' | 'sync' | 'session' | 'managed') => void>;
  }

  namespace offscreen {
    type Reason = 'WORKERS' | 'DOM_PARSER' | 'AUDIO_PLAYBACK' | 'BLOBS' | 'LOCAL_STORAGE' | 'USER_MEDIA' | 'WEB_RTC';
    function createDocument(parameters: { url: string; reasons: Reason[]; justification: string }): Promise<void>;
    function closeDocument(): Promise<void>;
  }

  namespace idle {
    type IdleState = 'active' | 'idle' | 'locked';
    function queryState(detectionIntervalInSeconds: number): Promise<IdleState>;
    function setDetectionInterval(intervalInSeconds: number): void;
    const onStateChanged: events.Event<(newState: IdleState) => void>;
  }

  namespace alarms {
    interface Alarm {
      name: string;
      scheduledTime: number;
      periodInMinutes?: number;
    }
    function create(name: string, alarmInfo: { delayInMinutes?: number; periodInMinutes?: number; when?: number }): Promise<void>;
    function get(name: string): Promise<Alarm | undefined>;
    const onAlarm: events.Event<(alarm: Alarm) => void>;
  }

  namespace windows {
    interface Window {
      id?: number;
      type?: string;
      focused: boolean;
    }
    function create(createData: { url?: string | string[]; type?: 'normal' | 'popup' | 'panel'; width?: number; height?: number; focused?: boolean }): Promise<Window | undefined>;
    function remove(windowId: number): Promise<void>;
    const onRemoved: events.Event<(windowId: number) => void>;
  }
}
