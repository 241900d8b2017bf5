// Capped exponential backoff for reconnecting to the engine gateway, and which failures deserve a retry.
using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;

namespace ShotStream.Core
{
    /// <summary>Exponential backoff for reconnecting: Initial * Multiplier^attempt, capped at Max. Only transient
    /// failures are retried (<see cref="IsTransient"/>): a refused handshake, a server error, a malformed message or
    /// a bug in the caller would fail the same way again, so retrying them only hides the cause.</summary>
    public sealed class ReconnectPolicy
    {
        public TimeSpan InitialDelay = TimeSpan.FromMilliseconds(250);
        public TimeSpan MaxDelay = TimeSpan.FromSeconds(10);
        public double Multiplier = 2.0;
        /// <summary>Attempts after the first failure; 0 = never retry, negative = forever.</summary>
        public int MaxRetries = 5;

        /// <summary>Delay before retry number <paramref name="retry"/> (0-based).</summary>
        public TimeSpan DelayFor(int retry)
        {
            if (retry < 0) throw new ArgumentOutOfRangeException(nameof(retry));
            if (Multiplier < 1) throw new InvalidOperationException("Multiplier must be >= 1");
            double ms = InitialDelay.TotalMilliseconds * Math.Pow(Multiplier, Math.Min(retry, 62));
            if (double.IsInfinity(ms) || double.IsNaN(ms) || ms > MaxDelay.TotalMilliseconds) ms = MaxDelay.TotalMilliseconds;
            return TimeSpan.FromMilliseconds(ms);
        }

        /// <summary>Whether retry number <paramref name="retry"/> (0-based) may run.</summary>
        public bool ShouldRetry(int retry) { return MaxRetries < 0 || retry < MaxRetries; }

        /// <summary>True for a failure a later attempt may not repeat: the network (connection refused, reset or
        /// lost, a timeout) or a <see cref="ShotStreamException"/> marked <see cref="ShotStreamException.Transient"/>.</summary>
        public static bool IsTransient(Exception e)
        {
            var s = e as ShotStreamException;
            if (s != null) return s.Transient;
            return e is IOException || e is WebSocketException || e is SocketException || e is WebException || e is TimeoutException;
        }

        /// <summary>Runs <paramref name="attempt"/> until it succeeds, retrying transient failures with backoff;
        /// any other failure, or the last one, is thrown. <paramref name="delay"/> replaces Task.Delay (tests).</summary>
        public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> attempt, CancellationToken ct = default(CancellationToken),
                                         Func<TimeSpan, CancellationToken, Task> delay = null)
        {
            for (int retry = 0; ; retry++)
            {
                try { return await attempt(ct).ConfigureAwait(false); }
                catch (Exception e) when (!ct.IsCancellationRequested && IsTransient(e) && ShouldRetry(retry)) { }
                await (delay ?? Task.Delay)(DelayFor(retry), ct).ConfigureAwait(false);
            }
        }
    }
}
