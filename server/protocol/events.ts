/**
 * State changes the helper broadcasts to every connection: containers and
 * images that appear, change or go. They carry no params schema: clients
 * never send them. Re-exported by index.ts; clients import them from there.
 */
import { NotificationType } from 'vscode-jsonrpc';
import type { ContainerEvent, ImageEvent } from './types';

export namespace ContainerEventNotification {
  export const method = 'capsa/event/container' as const;
  export const type = new NotificationType<ContainerEvent>(method);
}

export namespace ImageEventNotification {
  export const method = 'capsa/event/image' as const;
  export const type = new NotificationType<ImageEvent>(method);
}
