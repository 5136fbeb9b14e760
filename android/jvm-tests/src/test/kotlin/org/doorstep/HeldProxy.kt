package org.doorstep

import java.io.InputStream
import java.io.OutputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.CountDownLatch
import kotlin.concurrent.thread

/**
 * A TCP relay on 127.0.0.1 in front of the sync server. Once [hold] is called, the first
 * request that passes sets [requestSeen], and answers are held back until [release]: a sync
 * through it then waits on the network for as long as a test needs.
 */
class HeldProxy(private val host: String, private val upstreamPort: Int) : AutoCloseable {
    private val server = ServerSocket(0, 50, InetAddress.getLoopbackAddress())
    val port: Int = server.localPort
    @Volatile private var held = false
    @Volatile private var gate = CountDownLatch(0)
    @Volatile var requestSeen = CountDownLatch(1)
        private set

    init {
        thread(isDaemon = true) {
            while (!server.isClosed) {
                val client = try { server.accept() } catch (e: Exception) { break }
                val upstream = Socket(host, upstreamPort)
                thread(isDaemon = true) { pump(client.getInputStream(), upstream.getOutputStream(), toClient = false) }
                thread(isDaemon = true) { pump(upstream.getInputStream(), client.getOutputStream(), toClient = true) }
            }
        }
    }

    /** From now on, answers wait for [release]. */
    fun hold() {
        gate = CountDownLatch(1)
        requestSeen = CountDownLatch(1)
        held = true
    }

    /** Lets held answers through. */
    fun release() {
        held = false
        gate.countDown()
    }

    private fun pump(from: InputStream, to: OutputStream, toClient: Boolean) {
        val buf = ByteArray(64 * 1024)
        try {
            while (true) {
                val n = from.read(buf)
                if (n < 0) break
                if (!toClient && held) requestSeen.countDown()
                if (toClient) gate.await()
                to.write(buf, 0, n)
                to.flush()
            }
        } catch (e: Exception) {
            // a closed connection ends its relay
        } finally {
            runCatching { to.close() }
        }
    }

    override fun close() {
        release()
        server.close()
    }
}
