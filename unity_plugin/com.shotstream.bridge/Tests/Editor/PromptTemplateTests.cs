// Edit Mode tests of ShotPromptMap: game events -> prompt templates with {param}s, chunk counts, cut/wait.
using System;
using System.Collections.Generic;
using NUnit.Framework;
using ShotStream.Core;
using ShotStream.Unity;
using UnityEngine;

namespace ShotStream.Tests
{
    [TestFixture]
    public sealed class PromptTemplateTests
    {
        static Dictionary<string, string> P(params string[] kv)
        {
            var d = new Dictionary<string, string>();
            for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
            return d;
        }

        [Test]
        public void FillsEveryPlaceholder()
        {
            Assert.AreEqual("Ada duels Bo under Ada's banner", ShotPromptMap.Fill("duel", "{a} duels {b} under {a}'s banner", P("a", "Ada", "b", "Bo", "unused", "x")));
            Assert.AreEqual("a quiet {still} courtyard", ShotPromptMap.Fill("calm", "a quiet {{still}} courtyard", null), "doubled braces are literal");
            Assert.AreEqual("{ Ada }", ShotPromptMap.Fill("sp", "{{ { name } }}", P("name", "Ada")), "names are trimmed");
        }

        [Test]
        public void NamesEveryMissingParameter()
        {
            var e = Assert.Throws<ArgumentException>(() => ShotPromptMap.Fill("duel", "{a} duels {b}", null));
            StringAssert.Contains("missing parameters {a}, {b}", e.Message);
            StringAssert.Contains("\"duel\"", e.Message);
        }

        [Test]
        public void RejectsMalformedTemplates()
        {
            StringAssert.Contains("unclosed", Assert.Throws<FormatException>(() => ShotPromptMap.Fill("e", "{character enters", P("character", "x"))).Message);
            StringAssert.Contains("stray", Assert.Throws<FormatException>(() => ShotPromptMap.Fill("e", "the end }", null)).Message);
            Assert.Throws<FormatException>(() => ShotPromptMap.Fill("e", "empty {} placeholder", null));
        }

        [Test]
        public void ResolvesAnEventToACue()
        {
            var map = ScriptableObject.CreateInstance<ShotPromptMap>();
            try
            {
                map.Add("enter", "{character} enters the hall", 3, true).Add("calm", "a quiet courtyard", 0, false);
                ResolvedShot enter = map.Resolve("enter", P("character", "Ada"));
                Assert.AreEqual("Ada enters the hall", enter.Prompt);
                Assert.AreEqual(3u, enter.Chunks);
                Assert.AreEqual(CueMode.Cut, enter.Mode);
                Assert.AreEqual(CueMode.Wait, map.Resolve("calm").Mode);
                StringAssert.Contains("known: \"enter\", \"calm\"", Assert.Throws<KeyNotFoundException>(() => map.Resolve("exit")).Message);
            }
            finally { UnityEngine.Object.DestroyImmediate(map); }
        }
    }
}
