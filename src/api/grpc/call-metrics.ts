/**
 * Every call's end, told to the request metrics: its method path, its status code's name (OK, NOT_FOUND …)
 * and its latency. A server interceptor, so calls refused or failed before their handler count too.
 */
import { ServerInterceptingCall, status as Status } from '@grpc/grpc-js';
import type { ServerInterceptor } from '@grpc/grpc-js';

export type CallRecorder = (method: string, code: string, seconds: number) => void;

const CODE_NAMES = new Map<number, string>(Object.entries(Status).flatMap(([name, value]) => (typeof value === 'number' ? [[value, name] as [number, string]] : [])));

export function callMetricsInterceptor(record: CallRecorder): ServerInterceptor {
  return (method, call) => {
    const started = performance.now();
    return new ServerInterceptingCall(call, {
      sendStatus: (status, next) => {
        record(method.path, CODE_NAMES.get(status.code) ?? String(status.code), (performance.now() - started) / 1000);
        next(status);
      },
    });
  };
}
