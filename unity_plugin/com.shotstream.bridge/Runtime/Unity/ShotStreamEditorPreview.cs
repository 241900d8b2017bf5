// Edit-mode previews: the editor window (Window > ShotStream > Preview) registers the session it holds here, and tools
// that run in edit mode, where no ShotStreamClient plays (the Timeline track while scrubbing), cue shots through it.
using System;

namespace ShotStream.Unity
{
    /// <summary>The editor preview's session, for edit-mode tools. A handler takes (prompt, chunks, cut) and returns the
    /// cue's event id, or null when it sent nothing (not connected).</summary>
    public static class ShotStreamEditorPreview
    {
        static Func<string, int, bool, string> handler;

        /// <summary>True while an editor preview is registered (its window is open).</summary>
        public static bool Available { get { return handler != null; } }

        /// <summary>Registers the preview's cue handler (the editor window does, while it is open).</summary>
        public static void Register(Func<string, int, bool, string> cue)
        {
            if (cue == null) throw new ArgumentNullException(nameof(cue));
            handler = cue;
        }

        /// <summary>Removes <paramref name="cue"/> if it is the registered handler.</summary>
        public static void Unregister(Func<string, int, bool, string> cue)
        {
            if (handler == cue) handler = null;
        }

        /// <summary>Cues a shot on the editor preview's session; the event id, or null when there is no preview or it is not connected.</summary>
        public static string Cue(string prompt, int chunks, bool cut)
        {
            var h = handler;
            return h == null ? null : h(prompt, chunks, cut);
        }
    }
}
