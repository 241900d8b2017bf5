// Edit Mode tests of ShotStream.Core.ReconnectPolicy: capped exponential backoff; the delay is injected.
using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using ShotStream.Core;

namespace ShotStream.Tests
{
    [TestFixture]
    public sealed class ReconnectPolicyTests
    {
        static ReconnectPolicy Policy()
        {
            return new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(1), Multiplier = 2, MaxRetries = 3 };
        }

        [Test]
        public void DelaysGrowExponentiallyUpToTheCap()
        {
            var p = Policy();
            Assert.AreEqual(100.0, p.DelayFor(0).TotalMilliseconds);
            Assert.AreEqual(200.0, p.DelayFor(1).TotalMilliseconds);
            Assert.AreEqual(800.0, p.DelayFor(3).TotalMilliseconds);
            Assert.AreEqual(1000.0, p.DelayFor(4).TotalMilliseconds, "capped");
            Assert.AreEqual(1000.0, p.DelayFor(100000).TotalMilliseconds, "no overflow");
            Assert.IsTrue(p.ShouldRetry(2));
            Assert.IsFalse(p.ShouldRetry(3));
            Assert.IsTrue(new ReconnectPolicy { MaxRetries = -1 }.ShouldRetry(1000000), "negative = forever");
        }

        [Test]
        public void RetriesFailuresWithBackoff()
        {
            var delays = new List<double>();
            int calls = 0;
            int result = Policy().RunAsync(ct => { if (++calls < 3) throw new IOException("down"); return Task.FromResult(42); },
                                           CancellationToken.None, (d, ct) => { delays.Add(d.TotalMilliseconds); return Task.FromResult(0); })
                                 .GetAwaiter().GetResult();
            Assert.AreEqual(42, result);
            Assert.AreEqual(new[] { 100.0, 200.0 }, delays);
        }

        [Test]
        public void GivesUpAfterMaxRetries()
        {
            int calls = 0;
            Assert.Throws<IOException>(() => Policy().RunAsync<int>(ct => { calls++; throw new IOException("down"); },
                                                                    CancellationToken.None, (d, ct) => Task.FromResult(0)).GetAwaiter().GetResult());
            Assert.AreEqual(4, calls, "the first attempt + 3 retries");
        }

        [Test]
        public void DoesNotRetryWhatTheServerRefused()
        {
            int calls = 0;
            var e = Assert.Throws<ShotStreamException>(() => Policy().RunAsync<int>(ct => { calls++; throw new ShotStreamException(8, "too many sessions"); },
                                                                                    CancellationToken.None, (d, ct) => Task.FromResult(0)).GetAwaiter().GetResult());
            Assert.AreEqual(1, calls);
            Assert.AreEqual(8u, e.Code);
            Assert.AreEqual("shotstream error 8: too many sessions", e.Message);
        }

        [Test]
        public void RetriesALostConnection()
        {
            int calls = 0;
            int result = Policy().RunAsync(ct =>
            {
                if (++calls == 1) throw new ShotStreamException(0, "the connection to the server was lost", null, transient: true);
                return Task.FromResult(7);
            }, CancellationToken.None, (d, ct) => Task.FromResult(0)).GetAwaiter().GetResult();
            Assert.AreEqual(7, result);
            Assert.AreEqual(2, calls);
        }

        [Test]
        public void DoesNotRetryARefusedHandshakeOrABug()
        {
            int calls = 0;
            var refused = Assert.Throws<ShotStreamException>(() => Policy().RunAsync<int>(ct => { calls++; throw new ShotStreamException(0, "HTTP 401", null, false, 401); },
                                                                                          CancellationToken.None, (d, ct) => Task.FromResult(0)).GetAwaiter().GetResult());
            Assert.AreEqual(1, calls, "a wrong token stays wrong");
            Assert.AreEqual(401, refused.HttpStatus);
            calls = 0;
            Assert.Throws<NullReferenceException>(() => Policy().RunAsync<int>(ct => { calls++; throw new NullReferenceException(); },
                                                                               CancellationToken.None, (d, ct) => Task.FromResult(0)).GetAwaiter().GetResult());
            Assert.AreEqual(1, calls, "a programming error is not a network failure");
        }
    }
}
