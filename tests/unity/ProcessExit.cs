// Ends a test program without mono's runtime shutdown. Mono 6.8 aborts its System.Threading.Timer
// scheduler thread at exit; when that thread is inside List.Sort (CancellationTokenSource.CancelAfter
// and the WebSocket stack use timers) the abort surfaces as "FATAL UNHANDLED EXCEPTION" and exit code 1,
// after every test has passed. Flushing and calling libc _exit keeps the program's own exit code.
using System;
using System.Runtime.InteropServices;

static class ProcessExit
{
    [DllImport("libc", EntryPoint = "_exit")]
    static extern void _exit(int status);

    public static int Now(int code)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        _exit(code);
        return code;
    }
}
