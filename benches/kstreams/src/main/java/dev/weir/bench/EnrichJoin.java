package dev.weir.bench;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Weir's enrichment-join example in Kafka Streams, for the end-to-end bench: orders
 * keyed by customer id joined (inner) with a KTable of the customers topic, each sent
 * on as {@code {"order": <order>, "customer": <row>}} under the customer id, as the
 * example does. Both topics are keyed and co-partitioned, so there is no repartition;
 * the table is materialized in RocksDB from its source topic (no changelog of its
 * own), exactly-once v2.
 *
 * <p>Usage: {@code EnrichJoin BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS
 * COMMIT_INTERVAL_MS TABLE_TOPIC}. Runs until SIGTERM.
 */
public final class EnrichJoin {
    public static void main(String[] args) throws InterruptedException {
        if (args.length != 8) {
            System.err.println("usage: EnrichJoin BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS COMMIT_INTERVAL_MS TABLE_TOPIC");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[5]));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(args[6]));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.OPTIMIZE);
        props.put("consumer.auto.offset.reset", "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        KTable<String, String> customers =
                builder.table(args[7], Consumed.with(Serdes.String(), Serdes.String()));
        builder.stream(args[2], Consumed.with(Serdes.String(), Serdes.String()))
                .join(customers, (order, customer) ->
                        "{\"order\":" + order + ",\"customer\":" + customer + "}")
                .to(args[3], Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(props), props);
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
