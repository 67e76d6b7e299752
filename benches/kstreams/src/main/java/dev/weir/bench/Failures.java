package dev.weir.bench;

import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

/**
 * A bench app that fails says so and exits: the apps log through slf4j-nop, so without
 * this a stream thread's exception would leave a silent JVM that never commits, and the
 * bench would wait on it forever.
 */
final class Failures {
    private Failures() {}

    static void report(KafkaStreams streams) {
        streams.setUncaughtExceptionHandler(exception -> {
            System.err.println("kafka streams failed: " + exception);
            exception.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_APPLICATION;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR) {
                System.err.println("kafka streams stopped: " + before + " -> " + now);
                Runtime.getRuntime().halt(1);
            }
        });
    }
}
