// Story snapshots kept with a game save: written atomically (a temporary file, then renamed over the old one), never
// through a symbolic link, under Application.persistentDataPath unless a folder is given.
using System;
using System.IO;
using ShotStream.Core;
using UnityEngine;

namespace ShotStream.Unity
{
    /// <summary>
    /// Saves and loads the bytes of a story snapshot (<see cref="ShotStreamClient.snapshotReady"/>,
    /// <see cref="ShotStreamClient.ContinueFromSnapshot"/>) as a file, by default in <c>Application.persistentDataPath</c>:
    /// <code>client.snapshotReady.AddListener((data, nextShot) => ShotStreamSnapshotFile.Save(data, "slot1.snap"));
    /// client.ContinueFromSnapshot = ShotStreamSnapshotFile.Load("slot1.snap");</code>
    /// <para>A save never leaves a half-written file: the bytes go to a new temporary file next to the target (created
    /// exclusively, so it cannot be a planted link), are flushed to disk, and the file is then renamed over the old save in
    /// one step. A symbolic link where the save should go is refused (IOException), not followed, on save and on load.
    /// File names are plain names (1-128 of A-Z a-z 0-9 - _ ., not starting with a dot), never paths.</para>
    /// <para>Call the overloads without a folder on the main thread (Unity's <c>Application.persistentDataPath</c> is a
    /// main-thread API); the ones with a folder work on any thread, e.g. to write a 40 MiB snapshot off the main thread.</para>
    /// </summary>
    public static class ShotStreamSnapshotFile
    {
        /// <summary>The largest snapshot <see cref="Load(string)"/> reads (what the client accepts: 256 MiB).</summary>
        public const long MaxBytes = SnapshotAssembler.DefaultMaxBytes;
        public const int MaxFileNameChars = 128;

        /// <summary>Where the overloads without a folder keep snapshots: <c>Application.persistentDataPath</c>.</summary>
        public static string Folder { get { return Application.persistentDataPath; } }

        /// <summary>Writes <paramref name="data"/> to <c>persistentDataPath/fileName</c> atomically; returns the file's path.</summary>
        public static string Save(byte[] data, string fileName) { return Save(data, Folder, fileName); }

        /// <summary>Writes <paramref name="data"/> to <c>folder/fileName</c> atomically (the folder is created if missing); returns the file's path.</summary>
        public static string Save(byte[] data, string folder, string fileName)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            if (data.Length == 0) throw new ArgumentException("an empty snapshot: save the bytes snapshotReady delivered", nameof(data));
            string target = PathIn(folder, fileName);
            Directory.CreateDirectory(folder);
            RefuseLink(target);
            string temp = Path.Combine(folder, "." + fileName + "." + Guid.NewGuid().ToString("N") + ".tmp");
            try
            {
                // CreateNew (O_CREAT|O_EXCL): fails on anything already there, a link included, instead of following it
                using (var f = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                {
                    f.Write(data, 0, data.Length);
                    f.Flush(true);  // on disk before the rename makes it the save
                }
                try { File.Move(temp, target); }  // no save yet
                catch (IOException) when (File.Exists(target))
                {
                    RefuseLink(target);
                    File.Replace(temp, target, null);  // a rename over the old save: atomic, and it replaces the entry, not what it points to
                }
                return target;
            }
            finally
            {
                try { if (File.Exists(temp)) File.Delete(temp); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }

        /// <summary>Reads <c>persistentDataPath/fileName</c>.</summary>
        public static byte[] Load(string fileName) { return Load(Folder, fileName); }

        /// <summary>Reads <c>folder/fileName</c> (FileNotFoundException when there is none; at most <see cref="MaxBytes"/>).</summary>
        public static byte[] Load(string folder, string fileName)
        {
            string path = PathIn(folder, fileName);
            RefuseLink(path);
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            {
                long length = f.Length;
                if (length == 0) throw new InvalidDataException(path + " is empty: not a snapshot");
                if (length > MaxBytes) throw new InvalidDataException(path + " is " + length + " bytes, more than a snapshot may be (" + MaxBytes + ")");
                var data = new byte[length];
                int read = 0;
                while (read < data.Length)
                {
                    int n = f.Read(data, read, data.Length - read);
                    if (n == 0) throw new EndOfStreamException(path + " ended after " + read + " of " + length + " bytes (changed while read?)");
                    read += n;
                }
                return data;
            }
        }

        /// <summary>Whether <c>persistentDataPath/fileName</c> exists.</summary>
        public static bool Exists(string fileName) { return Exists(Folder, fileName); }
        public static bool Exists(string folder, string fileName) { return File.Exists(PathIn(folder, fileName)); }

        /// <summary>Deletes <c>persistentDataPath/fileName</c> (a link is deleted itself, never what it points to); false when there was none.</summary>
        public static bool Delete(string fileName) { return Delete(Folder, fileName); }
        public static bool Delete(string folder, string fileName)
        {
            string path = PathIn(folder, fileName);
            if (!File.Exists(path)) return false;
            File.Delete(path);
            return true;
        }

        /// <summary>folder/fileName after checking that the name is a plain file name.</summary>
        public static string PathIn(string folder, string fileName)
        {
            if (string.IsNullOrEmpty(folder)) throw new ArgumentException("no folder for the snapshot", nameof(folder));
            CheckName(fileName);
            return Path.Combine(folder, fileName);
        }

        static void CheckName(string fileName)
        {
            if (string.IsNullOrEmpty(fileName)) throw new ArgumentException("a snapshot needs a file name", nameof(fileName));
            if (fileName.Length > MaxFileNameChars) throw new ArgumentException("the file name has " + fileName.Length + " characters; at most " + MaxFileNameChars, nameof(fileName));
            if (fileName[0] == '.') throw new ArgumentException("the file name \"" + fileName + "\" starts with a dot", nameof(fileName));
            foreach (char c in fileName)
            {
                bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
                if (!ok) throw new ArgumentException("the file name \"" + fileName + "\" has '" + c + "': use A-Z a-z 0-9 - _ . (a name, not a path)", nameof(fileName));
            }
        }

        static void RefuseLink(string path)
        {
            FileAttributes attributes;
            try { attributes = File.GetAttributes(path); }
            catch (FileNotFoundException) { return; }
            catch (DirectoryNotFoundException) { return; }
            if ((attributes & FileAttributes.ReparsePoint) != 0)
                throw new IOException(path + " is a symbolic link (or another reparse point): snapshots are not read or written through links; delete it first");
            if ((attributes & FileAttributes.Directory) != 0) throw new IOException(path + " is a folder");
        }
    }
}
