// Named game events -> prompt templates ("{character} enters the hall"), chunk counts and cut/wait.
// Resolution is plain C# (no engine calls) so it is unit-tested under mono.
using System;
using System.Collections.Generic;
using System.Text;
using ShotStream.Core;
using UnityEngine;

namespace ShotStream.Unity
{
    /// <summary>One game event's shot: a prompt template with {param} placeholders ("{{" / "}}" are
    /// literal braces), the number of chunks (0 = the server's default) and whether it cuts the
    /// current shot or waits for it to finish.</summary>
    [Serializable]
    public sealed class ShotPromptEntry
    {
        [Tooltip("Game event name passed to ShotStreamDirector.Fire")]
        public string eventName = "";
        [Tooltip("Prompt with {param} placeholders, e.g. \"{character} enters the hall\"")]
        [TextArea(2, 6)]
        public string promptTemplate = "";
        [Tooltip("Chunks to generate (0 = server default)")]
        [Min(0)]
        public int chunks = 0;
        [Tooltip("Cut the current shot now (true) or queue after it (false)")]
        public bool cut = false;
    }

    /// <summary>A resolved cue, ready for <see cref="ShotStreamClient.Cue"/>.</summary>
    public struct ResolvedShot
    {
        public string EventName;
        public string Prompt;
        public uint Chunks;
        public bool Cut;
        public CueMode Mode { get { return Cut ? CueMode.Cut : CueMode.Wait; } }
    }

    [CreateAssetMenu(menuName = "ShotStream/Prompt Map", fileName = "ShotPromptMap")]
    public sealed class ShotPromptMap : ScriptableObject
    {
        [SerializeField] List<ShotPromptEntry> entries = new List<ShotPromptEntry>();

        public List<ShotPromptEntry> Entries { get { return entries; } }

        public ShotPromptMap Add(string eventName, string promptTemplate, int chunks = 0, bool cut = false)
        {
            entries.Add(new ShotPromptEntry { eventName = eventName, promptTemplate = promptTemplate, chunks = chunks, cut = cut });
            return this;
        }

        public bool Contains(string eventName) { return Find(eventName) != null; }

        ShotPromptEntry Find(string eventName)
        {
            foreach (var e in entries) if (e != null && string.Equals(e.eventName, eventName, StringComparison.Ordinal)) return e;
            return null;
        }

        /// <summary>Fills the event's template. Throws KeyNotFoundException for an unknown event (the
        /// message lists the known ones), ArgumentException naming every missing parameter, and
        /// FormatException for a malformed template (unclosed or empty placeholder, stray brace).</summary>
        public ResolvedShot Resolve(string eventName, IDictionary<string, string> parameters = null)
        {
            if (eventName == null) throw new ArgumentNullException(nameof(eventName));
            var entry = Find(eventName);
            if (entry == null)
            {
                var known = new List<string>();
                foreach (var e in entries) if (e != null) known.Add("\"" + e.eventName + "\"");
                throw new KeyNotFoundException("ShotPromptMap '" + name + "': unknown event \"" + eventName + "\" (known: "
                    + (known.Count == 0 ? "none" : string.Join(", ", known)) + ")");
            }
            if (entry.chunks < 0) throw new FormatException("ShotPromptMap: event \"" + eventName + "\" has negative chunks " + entry.chunks);
            return new ResolvedShot
            {
                EventName = eventName,
                Prompt = Fill(eventName, entry.promptTemplate ?? "", parameters),
                Chunks = (uint)entry.chunks,
                Cut = entry.cut,
            };
        }

        /// <summary>Substitutes {name} placeholders from <paramref name="parameters"/>.</summary>
        public static string Fill(string eventName, string template, IDictionary<string, string> parameters)
        {
            var sb = new StringBuilder(template.Length + 32);
            List<string> missing = null;
            for (int i = 0; i < template.Length; i++)
            {
                char c = template[i];
                if (c == '{')
                {
                    if (i + 1 < template.Length && template[i + 1] == '{') { sb.Append('{'); i++; continue; }
                    int end = template.IndexOf('}', i + 1);
                    if (end < 0) throw new FormatException("event \"" + eventName + "\": unclosed '{' at position " + i + " in template \"" + template + "\"");
                    string key = template.Substring(i + 1, end - i - 1).Trim();
                    if (key.Length == 0 || key.IndexOf('{') >= 0)
                        throw new FormatException("event \"" + eventName + "\": bad placeholder at position " + i + " in template \"" + template + "\"");
                    string value;
                    if (parameters != null && parameters.TryGetValue(key, out value) && value != null) sb.Append(value);
                    else
                    {
                        if (missing == null) missing = new List<string>();
                        if (!missing.Contains(key)) missing.Add(key);
                    }
                    i = end;
                }
                else if (c == '}')
                {
                    if (i + 1 < template.Length && template[i + 1] == '}') { sb.Append('}'); i++; continue; }
                    throw new FormatException("event \"" + eventName + "\": stray '}' at position " + i + " in template \"" + template + "\" (use '}}')");
                }
                else sb.Append(c);
            }
            if (missing != null)
                throw new ArgumentException("event \"" + eventName + "\": missing parameter" + (missing.Count > 1 ? "s " : " ")
                    + string.Join(", ", missing.ConvertAll(m => "{" + m + "}")) + " for template \"" + template + "\"");
            return sb.ToString();
        }
    }
}
