package dev.weir.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Weir's tumbling-count example in Kafka Streams, for the end-to-end bench: records per
 * key in tumbling event-time windows with a grace period, each window emitted once when
 * it closes (suppressed until then), as JSON text like the example's. The input is
 * keyed, and the key is not changed, so there is no repartition: each task counts its
 * input partition, as Weir does. RocksDB window store, exactly-once v2.
 *
 * <p>Usage: {@code WindowedCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS
 * COMMIT_INTERVAL_MS [WINDOW_MS GRACE_MS]}. Runs until SIGTERM.
 */
public final class WindowedCount {
    public static void main(String[] args) throws InterruptedException {
        if (args.length != 7 && args.length != 9) {
            System.err.println("usage: WindowedCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS COMMIT_INTERVAL_MS [WINDOW_MS GRACE_MS]");
            System.exit(2);
        }
        long windowMs = args.length == 9 ? Long.parseLong(args[7]) : 60_000;
        long graceMs = args.length == 9 ? Long.parseLong(args[8]) : 10_000;
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[5]));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(args[6]));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put("consumer.auto.offset.reset", "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[2], Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .groupByKey()
                .windowedBy(TimeWindows.ofSizeAndGrace(
                        Duration.ofMillis(windowMs), Duration.ofMillis(graceMs)))
                .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("counts")
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((window, count) -> KeyValue.pair(window.key(),
                        "{\"window_start\":" + window.window().start()
                                + ",\"window_end\":" + window.window().end()
                                + ",\"count\":" + count + "}"))
                .to(args[3], Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        Failures.report(streams);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stopped.countDown();
        }));
        streams.start();
        System.out.println("started " + args[1]);
        System.out.flush();
        stopped.await();
    }
}
